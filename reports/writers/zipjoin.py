"""A zip file made of pieces whose compressed data already exists: deflate streams written apart
and joined, the way pigz does it. Each stream but the last of an entry ends with a sync flush (on a
byte boundary, in a non-final block), so the streams concatenate into one valid stream; the entry's
CRC-32 is combined from theirs (crc32_combine, which ISA-L's zlib exposes and Python's does not) and the
sizes add up. The join then writes only the headers around them. ZIP64 where sizes or offsets
need it. Times are fixed, so the same content always makes the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib

from .base import Piece, Slice

# Deflate by ISA-L (python-isal): the same format as zlib's, about five times faster at level 1 on
# sheet XML (measured: see docs/benchmark.md), which already makes it ~8x smaller.
LEVEL = 1
# 2020-01-01 00:00
DOS_DATE, DOS_TIME = (2020 - 1980) << 9 | 1 << 5 | 1, 0
SYNC_FLUSH, FINISH = isal_zlib.Z_SYNC_FLUSH, isal_zlib.Z_FINISH
crc32 = isal_zlib.crc32
# The CRC-32 of A + B from crc32(A), crc32(B) and len(B).
crc32_combine = isal_zlib.crc32_combine
# sizes and offsets from here on need ZIP64 (tests lower it)
ZIP32_LIMIT = 0xFFFFFFFF
# "see the ZIP64 record"
MARK = 0xFFFFFFFF


def compressor() -> Any:
    """A raw deflate stream's compressor (flush with SYNC_FLUSH to end a piece, FINISH the last)."""
    return isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, -15)


def deflate(data: bytes, *, last: bool) -> bytes:
    """A raw deflate stream of `data`, ended with a sync flush (to be continued) or finished."""
    deflating = compressor()
    data = deflating.compress(data) + deflating.flush(FINISH if last else SYNC_FLUSH)
    return data


# -- The zip ---------------------------------------------------------------------------------------


@dataclass
class Entry:
    """A zip entry: its name, its compressed data as pieces, and the facts about them."""

    name: str
    pieces: list[Piece]
    crc: int
    # uncompressed
    size: int
    compressed_size: int

    @classmethod
    def of(cls, name: str, data: bytes) -> Entry:
        """A small entry compressed here and now."""
        compressed = deflate(data, last=True)
        return cls(name, [compressed], crc32(data), len(data), len(compressed))


class StreamJoin:
    """One entry's deflate stream built from streams written apart, in order."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.crc = 0
        self.size = self.compressed_size = 0

    def add(self, piece: Piece, *, crc: int, size: int) -> None:
        """Append a sync-flushed (or, last, finished) raw deflate stream of `size` bytes of data."""
        self.pieces.append(piece)
        self.crc = crc32_combine(self.crc, crc, size)
        self.size += size
        self.compressed_size += len(piece) if isinstance(piece, bytes) else piece.end - piece.start

    def add_data(self, data: bytes, *, last: bool = False) -> None:
        self.add(deflate(data, last=last), crc=crc32(data), size=len(data))

    def entry(self, name: str) -> Entry:
        return Entry(name, self.pieces, self.crc, self.size, self.compressed_size)


def zip_pieces(entries: Sequence[Entry]) -> list[Piece]:
    """The whole zip file: each entry's local header and data, then the central directory. ZIP64
    fields (APPNOTE 4.5.3) are written only for what passes 32 bits: a local header then carries
    both sizes; a central header each value that passes, in the order the format gives."""
    pieces: list[Piece] = []
    central: list[bytes] = []
    offset = 0
    for entry in entries:
        name = entry.name.encode()
        big_sizes = max(entry.size, entry.compressed_size) >= ZIP32_LIMIT
        version = 45 if big_sizes or offset >= ZIP32_LIMIT else 20
        start = struct.pack("<HHHHHL", version, 0, zlib.DEFLATED, DOS_TIME, DOS_DATE, entry.crc)
        local_extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.compressed_size) if big_sizes else b""
        sizes = struct.pack("<LL", *((MARK, MARK) if big_sizes else (entry.compressed_size, entry.size)))
        header = (
            struct.pack("<L", 0x04034B50)
            + start
            + sizes
            + struct.pack("<HH", len(name), len(local_extra))
            + name
            + local_extra
        )
        pieces += [header, *entry.pieces]
        passing = [v for v in (entry.size, entry.compressed_size, offset) if v >= ZIP32_LIMIT]
        central_extra = struct.pack(f"<HH{len(passing)}Q", 1, 8 * len(passing), *passing) if passing else b""
        central_sizes = [MARK if v >= ZIP32_LIMIT else v for v in (entry.compressed_size, entry.size)]
        central.append(
            struct.pack("<LH", 0x02014B50, version)
            + start
            + struct.pack("<LLH", *central_sizes, len(name))
            + struct.pack("<HHHHLL", len(central_extra), 0, 0, 0, 0, MARK if offset >= ZIP32_LIMIT else offset)
            + name
            + central_extra
        )
        offset += len(header) + entry.compressed_size
    directory = b"".join(central)
    pieces.append(directory + end_of_directory(len(entries), len(directory), offset))
    return pieces


def end_of_directory(count: int, size: int, offset: int) -> bytes:
    if count < 0xFFFF and size < ZIP32_LIMIT and offset < ZIP32_LIMIT:
        return struct.pack("<LHHHHLLH", 0x06054B50, 0, 0, count, count, size, offset, 0)
    zip64_end = struct.pack("<LQHHLLQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<LLQL", 0x07064B50, 0, offset + size, 1)
    return zip64_end + locator + struct.pack("<LHHHHLLH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, MARK, MARK, 0)


__all__ = ["Entry", "Slice", "StreamJoin", "crc32_combine", "deflate", "zip_pieces"]
