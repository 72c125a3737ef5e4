"""Reading a report's rows: a key range of its queryset, and connections of their own for long reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.utils import load_backend
from psycopg import adapters, pq
from psycopg.adapt import Loader


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
    settings_dict = connections[alias].settings_dict
    # Not from a pool (Django keeps one per alias and this alias is used once): a plain connection.
    options = {k: v for k, v in settings_dict.get("OPTIONS", {}).items() if k != "pool"}
    name = f"{alias}-read-{uuid.uuid4().hex}"
    connection = load_backend(settings_dict["ENGINE"]).DatabaseWrapper({**settings_dict, "OPTIONS": options}, name)
    connections[name] = connection
    if connection.vendor == "postgresql" and settings.USE_TZ and connection.timezone_name == "UTC":
        connection.ensure_connection()
        connection.connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    try:
        yield connection
    finally:
        del connections[connection.alias]
        connection.close()


class UtcTimestamptzLoader(Loader):
    """psycopg's own timestamptz loader, for a session in UTC, where it already returns datetimes in
    `datetime.UTC`. Django wraps it to set the connection's zone on every value again (a Python call
    and a `replace()` per value: a sixth of the Python path's time on a report with two datetime
    columns). `timezone` tells Django's cursors that the zone is right."""

    timezone = dt.UTC

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        native = adapters.get_loader(adapters.types["timestamptz"].oid, pq.Format.TEXT)
        self.load = native(oid, context).load  # the C function itself: no Python frame per value

    def load(self, data):  # replaced per instance by psycopg's
        raise NotImplementedError
