"""Parquet: typed columns (integers, exact decimals, booleans, dates, timestamps in UTC, text),
zstd-compressed, for pandas, Spark, DuckDB and friends. Nothing is escaped: no formulas run there.

A segment is a Parquet file of its rows. Parquet files do not concatenate, so the join rewrites the
segments' row groups into one file, a batch at a time (reading compressed columns back is cheap next
to building them from the database rows; memory stays one batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .base import ColumnSpec, SegmentInfo, Writer

ARROW_TYPES = {
    "text": pa.large_string(), "integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_(),
    "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"), "time": pa.time64("ns"),
}  # fmt: skip
COMPRESSION = "zstd"


def arrow_type(column: ColumnSpec) -> pa.DataType:
    if column.kind == "decimal":  # exact, where the field says how; else the digits as text
        return pa.decimal128(column.precision, column.scale) if column.precision else pa.large_string()
    return ARROW_TYPES[column.kind]


class ParquetWriter(Writer):
    extension = "parquet"
    content_type = "application/vnd.apache.parquet"
    rows_per_second = 600_000
    rewrites = True

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, arrow_type(c)) for c in self.columns])

    def open_segment(self) -> None:
        self.file = pq.ParquetWriter(self.fh, self.schema, compression=COMPRESSION)

    def write_batch(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self.file.write_table(frame.to_arrow().cast(self.schema))

    def close_segment(self) -> dict:
        self.file.close()
        return {}

    def rewrite(self, segments: Sequence[SegmentInfo], open_segment: Callable[[str], BinaryIO]) -> None:
        """Write the segments' rows, in order, as one Parquet file into fh."""
        with pq.ParquetWriter(self.fh, self.schema, compression=COMPRESSION) as file:
            for segment in segments:
                with open_segment(segment.name) as fh:
                    for batch in pq.ParquetFile(fh).iter_batches():
                        file.write_batch(batch)
