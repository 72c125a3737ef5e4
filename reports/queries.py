"""Reading a report's rows: a key range of its queryset, and connections of their own for long reads."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet


def key_range(queryset: QuerySet, after, upper) -> QuerySet:
    """The rows `after < pk <= upper` (from the start when `after` is None), in key order."""
    rows = queryset.filter(pk__lte=upper) if after is None else queryset.filter(pk__gt=after, pk__lte=upper)
    return rows.order_by("pk")


@contextlib.contextmanager
def own_connection(alias: str) -> Iterator[BaseDatabaseWrapper]:
    """A new connection to the database `alias`, under an alias of its own (`queryset.using(
    connection.alias)`) until it is closed afterwards. One long read (a COPY, a server-side cursor)
    runs there while the usual connection saves progress, which other processes see at once, and
    stays free of the read's session settings and transaction."""
    connection = connections.create_connection(alias)
    connection.alias = f"{alias}-read-{uuid.uuid4().hex}"
    connections[connection.alias] = connection
    try:
        yield connection
    finally:
        del connections[connection.alias]
        connection.close()
