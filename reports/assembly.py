"""One stored file from pieces: bytes made by the join and slices of segment objects, in order.

On S3, when some segments are big enough to be parts of a multipart upload (5 MiB, all but the
last part), the object is put together by S3 itself: each such segment is an `UploadPartCopy` of the
segment object, and only the bytes around them (a header, a footer, zip headers, and a segment
that must share a part with them) pass through the worker, streamed. Otherwise the pieces are
streamed into a spool file that is stored in one save. Either way the file appears only complete.
Segment objects read back into a spool file are checked against their recorded size and checksum
(S3 checks what it copies and serves itself).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from django.core.files.storage import Storage
from isal import isal_zlib

from .files import reports_storage, store
from .writers import Piece, Slice

logger = logging.getLogger(__name__)
# S3: every part of a multipart upload but the last
MIN_PART = 5 * 1024 * 1024
# Blocks read at a time. The join copied 255 MB in 0.15 s with blocks of 256 or 512 KB, 0.18 s with 64 KB
# and 0.38 s with 1 MB ones (in a worker, after writing the segments; measured in the NDJSON benchmark).
READ = 256 * 1024


class SegmentCorrupt(Exception):
    pass


class Checksum:
    """A segment object's checksum, "crc32:<8 hex digits>": CRC-32 by ISA-L, ~9 GB/s here. It finds an
    object that is not what was written (cut short, a byte changed); it keeps out nobody who can write
    to the storage, since they could change the finished file too. Objects recorded by earlier
    versions have a SHA-256 (64 hex digits), checked as such: 1.2 GB/s, which cost a 1M-row CSV job
    0.2 s of its 4, once after each segment and once in the join."""

    PREFIX = "crc32:"

    def __init__(self, recorded: str | None = None):
        self.sha256 = hashlib.sha256() if recorded and not recorded.startswith(self.PREFIX) else None
        self.crc = 0

    def update(self, block: bytes) -> None:
        if self.sha256:
            self.sha256.update(block)
        else:
            self.crc = isal_zlib.crc32(block, self.crc)

    def value(self) -> str:
        return self.sha256.hexdigest() if self.sha256 else f"{self.PREFIX}{self.crc:08x}"

    @classmethod
    def of_file(cls, path: Path) -> str:
        checksum = cls()
        with path.open("rb") as fh:
            while block := fh.read(READ):
                checksum.update(block)
        return checksum.value()


def store_pieces(pieces: Sequence[Piece], name: str, *, spool: Path, checksums: Mapping[str, str]) -> tuple[str, int]:
    """Store the file made of `pieces` under `name` (or a free name like it): (its name, its size)."""
    storage = reports_storage()
    if is_s3(storage) and any(isinstance(p, Slice) and p.end - p.start >= MIN_PART for p in pieces):
        return S3Assembly(storage, name).run(pieces)
    spool.parent.mkdir(parents=True, exist_ok=True)
    try:
        with spool.open("wb") as fh:
            for piece in pieces:
                for block in read_piece(storage, piece, checksums):
                    fh.write(block)
        return store(spool, name)
    finally:
        spool.unlink(missing_ok=True)


def read_piece(storage: Storage, piece: Piece, checksums: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """A piece's bytes, a block at a time. A whole segment is read (and checked when its checksum is
    given); the blocks of the slice are yielded."""
    if isinstance(piece, bytes):
        yield piece
        return
    expected = (checksums or {}).get(piece.name)
    checksum, position = Checksum(expected), 0
    with storage.open(piece.name, "rb") as fh:
        while block := fh.read(READ):
            checksum.update(block)
            start, end = max(piece.start - position, 0), min(piece.end - position, len(block))
            if start < end:
                yield block[start:end]
            position += len(block)
    if position < piece.end or (expected and checksum.value() != expected):
        raise SegmentCorrupt(f"The segment object {piece.name} is not what was written (size or checksum).")


def is_s3(storage: Storage) -> bool:
    # imported already by an S3 storage; else none is
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and isinstance(storage, s3.S3Storage)


class S3Assembly:
    """A multipart upload of the pieces: big slices copied by S3, the rest uploaded in parts of at
    least MIN_PART bytes, streamed."""

    def __init__(self, storage: Any, name: str):
        self.storage = storage
        self.name = storage.get_available_name(name)
        self.client = storage.connection.meta.client
        self.bucket = storage.bucket_name
        self.parts: list[dict[str, Any]] = []
        self.copied = 0
        self.buffer = bytearray()

    def key(self, name: str) -> str:
        # the storage's own location prefix, as save() uses
        return str(self.storage._normalize_name(name))

    def run(self, pieces: Sequence[Piece]) -> tuple[str, int]:
        content_type = mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        params = {"ContentType": content_type, **self.storage.get_object_parameters(self.name)}
        if self.storage.default_acl:
            params["ACL"] = self.storage.default_acl
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key(self.name), **params)
        self.upload_id = upload["UploadId"]
        try:
            size = sum(self.add(piece) for piece in pieces)
            self.flush(last=True)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key(self.name),
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key(self.name), UploadId=self.upload_id)
            raise
        logger.info("Stored %s from %s parts (%s copied by S3).", self.name, len(self.parts), self.copied)
        return self.name, size

    def add(self, piece: Piece) -> int:
        """Add a piece: what of it can be a part of its own is copied by S3, the rest goes through the
        buffer (which a big slice first fills up to a part's minimum)."""
        if isinstance(piece, bytes):
            return self.take(piece)
        start = piece.start
        if self.buffer and piece.end - start - (MIN_PART - len(self.buffer)) >= MIN_PART:
            start += self.take(Slice(piece.name, start, start + MIN_PART - len(self.buffer)))
        if not self.buffer and piece.end - start >= MIN_PART:
            self.copy(Slice(piece.name, start, piece.end))
            return piece.end - piece.start
        return start - piece.start + self.take(Slice(piece.name, start, piece.end))

    def copy(self, piece: Slice) -> None:
        number = len(self.parts) + 1
        result = self.client.upload_part_copy(
            Bucket=self.bucket,
            Key=self.key(self.name),
            UploadId=self.upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": self.key(piece.name)},
            CopySourceRange=f"bytes={piece.start}-{piece.end - 1}",
        )
        self.parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
        self.copied += 1

    def take(self, piece: Piece) -> int:
        """Add the piece's bytes to the buffer (a slice: by a ranged read), uploading parts as it fills."""
        size = 0
        for block in [piece] if isinstance(piece, bytes) else self.read(piece):
            self.buffer += block
            size += len(block)
            self.flush()
        return size

    def read(self, piece: Slice) -> Iterator[bytes]:
        if piece.end > piece.start:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self.key(piece.name), Range=f"bytes={piece.start}-{piece.end - 1}"
            )["Body"]
            yield from body.iter_chunks(READ)

    def flush(self, *, last: bool = False) -> None:
        if len(self.buffer) >= MIN_PART or (last and (self.buffer or not self.parts)):
            number = len(self.parts) + 1
            result = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key(self.name),
                UploadId=self.upload_id,
                PartNumber=number,
                Body=bytes(self.buffer),
            )
            self.parts.append({"PartNumber": number, "ETag": result["ETag"]})
            self.buffer.clear()
