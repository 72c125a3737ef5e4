"""Thrift's compact protocol, read and written as it is: just enough to rewrite a Parquet footer.

A struct is a list of [field id, type, value]; a list or set is [element type, values]; a map is
[key type, value type, [(key, value), ...]]. Integers are Python ints, binaries bytes, doubles the
8 bytes as read, booleans the type of their field (or the byte of their list element). Encoding what
was decoded gives the same bytes back; a field that is not understood is kept as it is.
"""

from __future__ import annotations

from typing import Any

# A field is [id, type, value]; a struct, a list of fields.
Field = list[Any]
Struct = list[Field]

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
INTEGERS = (I16, I32, I64)


class Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def integer(self) -> int:
        raw = self.varint()
        return (raw >> 1) ^ -(raw & 1)

    def value(self, kind: int) -> Any:
        if kind in INTEGERS:
            return self.integer()
        if kind == BYTE:
            return self.byte()
        if kind == DOUBLE:
            self.at += 8
            return self.data[self.at - 8 : self.at]
        if kind == BINARY:
            size = self.varint()
            self.at += size
            return self.data[self.at - size : self.at]
        if kind in (LIST, SET):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            element = header & 0x0F
            return [element, [self.byte() if element in (TRUE, FALSE) else self.value(element) for _ in range(size)]]
        if kind == MAP:
            size = self.varint()
            types = self.byte() if size else 0
            key, value = types >> 4, types & 0x0F
            return [key, value, [(self.value(key), self.value(value)) for _ in range(size)]]
        if kind == STRUCT:
            fields, last = [], 0
            while (header := self.byte()) != STOP:
                kind_ = header & 0x0F
                last = last + (header >> 4) if header >> 4 else self.integer()
                fields.append([last, kind_, None if kind_ in (TRUE, FALSE) else self.value(kind_)])
            return fields
        raise ValueError(f"Unknown Thrift compact type {kind}.")


def decode(data: bytes) -> Struct:
    """A struct (a Parquet FileMetaData, say) from its bytes."""
    struct: Struct = Reader(data).value(STRUCT)
    return struct


def encode(struct: Struct) -> bytes:
    out = bytearray()
    write(out, STRUCT, struct)
    return bytes(out)


def varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def write(out: bytearray, kind: int, value: Any) -> None:
    if kind in INTEGERS:
        varint(out, (value << 1) ^ (value >> 63))
    elif kind == BYTE:
        out.append(value)
    elif kind == DOUBLE:
        out += value
    elif kind == BINARY:
        varint(out, len(value))
        out += value
    elif kind in (LIST, SET):
        element, values = value
        if len(values) < 15:
            out.append(len(values) << 4 | element)
        else:
            out.append(0xF0 | element)
            varint(out, len(values))
        for item in values:
            out.append(item) if element in (TRUE, FALSE) else write(out, element, item)
    elif kind == MAP:
        key, value_kind, items = value
        varint(out, len(items))
        if items:
            out.append(key << 4 | value_kind)
        for k, v in items:
            write(out, key, k)
            write(out, value_kind, v)
    elif kind == STRUCT:
        last = 0
        for field_id, kind_, item in value:
            if 0 < field_id - last <= 15:
                out.append((field_id - last) << 4 | kind_)
            else:
                out.append(kind_)
                varint(out, (field_id << 1) ^ (field_id >> 63))
            last = field_id
            if kind_ not in (TRUE, FALSE):
                write(out, kind_, item)
        out.append(STOP)
    else:
        raise ValueError(f"Unknown Thrift compact type {kind}.")


def field(struct: Struct, field_id: int) -> Field | None:
    """The [id, type, value] of a struct's field, or None."""
    return next((f for f in struct if f[0] == field_id), None)


def required(struct: Struct, field_id: int) -> Field:
    """The [id, type, value] of a field the struct must have."""
    found = field(struct, field_id)
    if found is None:
        raise ValueError(f"The Thrift struct has no field {field_id}.")
    return found
