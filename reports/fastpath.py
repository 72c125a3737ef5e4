"""CSV straight from PostgreSQL: `COPY (<the report's query>) TO STDOUT` into the spool file.

Value formatting and formula escaping are done in SQL so the bytes equal the Python path's
(reports.writers.csv) exactly; a test proves it on the awkward demo data. Only reports whose every
column is a plain field of a kind formatted here are eligible; the rest take the Python path.
Progress is saved and a cancel noticed every batch of rows while the COPY streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from django.conf import settings
from django.db import connections, models
from django.db.models import F, Func, QuerySet

from .definitions import resolve_field
from .queries import key_range, own_connection
from .writers.base import FORMULA_RISK_PATTERN

ROWS_PER_SECOND = 200_000  # about what one worker writes this way (see the benchmark): sizes segments
PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.AutoField, models.DecimalField,
                models.BooleanField, models.DateTimeField, models.DateField)  # fmt: skip
TEMPLATES = {
    # Python writes None and "" alike as an empty cell; COPY would quote "": make "" NULL.
    "text": "NULLIF(%(expressions)s, '')",
    # The Python path's rule (reports.writers.base.FORMULA_RISK) in PostgreSQL's regular expressions.
    "escaped_text": (
        f"CASE WHEN %(expressions)s ~ '^(?:{FORMULA_RISK_PATTERN})' "
        "THEN '''' || %(expressions)s ELSE NULLIF(%(expressions)s, '') END"
    ),
    "boolean": "CASE WHEN %(expressions)s THEN 'true' WHEN NOT %(expressions)s THEN 'false' END",
    "date": "%(expressions)s::text",  # DateStyle ISO: YYYY-MM-DD
    # datetime.isoformat(): seconds, microseconds only when not zero, then the offset as +HH:MM.
    # ('.000000' can stand only where the microseconds are.)
    "datetime": "replace(to_char(%(expressions)s, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'), '.000000', '')",
    # In UTC the offset is fixed and a timestamp's ISO text is far cheaper than to_char(); it drops zero
    # microseconds as Python does, but also trailing zeros of the others ('.19727'): pad those to six.
    "datetime_utc": (
        "replace(CASE WHEN length((%(expressions)s AT TIME ZONE 'UTC')::text) = 19 "
        "THEN (%(expressions)s AT TIME ZONE 'UTC')::text "
        "ELSE rpad((%(expressions)s AT TIME ZONE 'UTC')::text, 26, '0') END, ' ', 'T') || '+00:00'"
    ),
}


def eligible(report, format: str, connection_alias: str = "default") -> bool:
    if not settings.REPORTS_CSV_COPY or format not in ("csv", "csv_excel"):
        return False
    if connections[connection_alias].vendor != "postgresql" or report.has_computed_columns():
        return False
    columns = report.get_columns()
    if len(columns) < 2:  # Python's csv writes a lone empty field as "": not worth a special case
        return False
    model = report.get_model()
    return all(isinstance(resolve_field(model, c.name), PLAIN_FIELDS) for c in columns)


def column_expression(path: str, kind: str, escape: bool):
    if kind == "text":
        kind = "escaped_text" if escape else "text"
    elif kind == "datetime" and settings.TIME_ZONE == "UTC":
        kind = "datetime_utc"
    template = TEMPLATES.get(kind)
    if template is None:  # integers and decimals: COPY's text is Python's text
        return F(path)
    return Func(F(path), template=template, output_field=models.TextField())


def copy_chunks(fh: BinaryIO, report, queryset: QuerySet, after, upper, batch_rows: int) -> Iterator[int]:
    """Write the rows `after < pk <= upper` as CSV into fh with one COPY; yield the rows written after
    each batch of `batch_rows` rows and after the last, so progress is saved and a cancel noticed
    while the COPY runs. Closing the generator early cancels the query.

    The COPY has a connection of its own (reports.queries.own_connection), in autocommit: one
    statement, one snapshot. One COPY rather than one per chunk: each would plan and join again.
    """
    if upper is None:
        return
    specs = report.get_column_specs()
    annotations = {f"_c{i}": column_expression(s.name, s.kind, report.escape_formulas) for i, s in enumerate(specs)}
    rows = key_range(queryset, after, upper).annotate(**annotations).values_list(*annotations)
    sql, params = rows.query.sql_with_params()
    with own_connection(queryset.db) as connection, connection.cursor() as cursor:
        # Dates and datetimes as the Python path writes them: ISO style, in the reports' zone.
        cursor.execute("SELECT set_config('TimeZone', %s, false), set_config('DateStyle', 'ISO', false)",
                       [settings.TIME_ZONE])  # fmt: skip
        options = f"FORMAT csv, DELIMITER {connection.ops.compose_sql('%s', [report.csv_delimiter])}"
        copy_sql = f"COPY ({connection.ops.compose_sql(sql, params)}) TO STDOUT WITH ({options})"
        to_crlf = CrlfConverter()
        batch: list[bytes] = []
        with cursor.copy(copy_sql) as copy:
            for block in copy:  # psycopg yields a row at a time, as PostgreSQL sends them
                batch.append(block)
                if len(batch) == batch_rows:
                    fh.write(to_crlf(b"".join(batch)))
                    batch.clear()
                    yield batch_rows
        fh.write(to_crlf(b"".join(batch)))
        yield len(batch)


class CrlfConverter:
    """PostgreSQL ends CSV rows with LF; RFC 4180 (and Python's csv) with CRLF. Turn row ends
    into CRLF and leave newlines inside quoted fields alone, tracking the quote state across
    blocks. Between quote characters, segments alternate outside/inside ("" splits harmlessly)."""

    def __init__(self):
        self.inside = False

    def __call__(self, block: bytes) -> bytes:
        parts = block.split(b'"')
        for i in range(1 if self.inside else 0, len(parts), 2):
            parts[i] = parts[i].replace(b"\n", b"\r\n")
        if len(parts) % 2 == 0:
            self.inside = not self.inside
        return b'"'.join(parts)
