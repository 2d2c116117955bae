"""Bitcoin-style binary serialization primitives.

All integers are little-endian. Vector lengths use CompactSize:

    value             encoding
    < 0xfd            1 byte
    <= 0xffff         0xfd + uint16
    <= 0xffffffff     0xfe + uint32
    larger            0xff + uint64

Decoding is strict, as Bitcoin Core's ``ReadCompactSize``: a value that fits
a shorter form is refused, and sizes above :data:`MAX_SIZE` are refused before
anything is allocated. Every failure raises :class:`ParseError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from .errors import ParseError

MAX_SIZE = 0x02000000
"""Largest length prefix accepted (Bitcoin Core's MAX_SIZE, 32 MiB)."""

T = TypeVar("T")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")


def ser_compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + _U16.pack(n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + _U32.pack(n)
    return b"\xff" + _U64.pack(n)


def ser_varbytes(data: bytes) -> bytes:
    return ser_compact_size(len(data)) + data


def ser_u32(n: int) -> bytes:
    return _U32.pack(n)


def ser_i32(n: int) -> bytes:
    return _I32.pack(n)


def ser_u64(n: int) -> bytes:
    return _U64.pack(n)


def ser_i64(n: int) -> bytes:
    return _I64.pack(n)


def ser_vector(items: Sequence[T], ser: Callable[[T], bytes]) -> bytes:
    return ser_compact_size(len(items)) + b"".join(ser(i) for i in items)


def ser_stack(items: Sequence[bytes]) -> bytes:
    """A witness stack: a count, then each item length-prefixed."""
    return ser_compact_size(len(items)) + b"".join(ser_varbytes(i) for i in items)


class ByteReader:
    """A cursor over an immutable buffer; every read checks its bounds."""

    __slots__ = ("_buf", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._buf = data
        self._pos = 0
        self._end = len(data)

    @property
    def pos(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def slice(self, start: int, end: int) -> bytes:
        return self._buf[start:end]

    def read(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end > self._end:
            raise ParseError(f"truncated: wanted {n} bytes at offset {pos}, have {self._end - pos}")
        self._pos = end
        return self._buf[pos:end]

    def read_u8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise ParseError(f"truncated: wanted 1 byte at offset {pos}")
        self._pos = pos + 1
        return self._buf[pos]

    def peek_u8(self) -> int:
        if self._pos >= self._end:
            raise ParseError(f"truncated: wanted 1 byte at offset {self._pos}")
        return self._buf[self._pos]

    def _unpack(self, st: struct.Struct) -> int:
        pos = self._pos
        if pos + st.size > self._end:
            raise ParseError(f"truncated: wanted {st.size} bytes at offset {pos}")
        self._pos = pos + st.size
        value: int = st.unpack_from(self._buf, pos)[0]
        return value

    def read_u16(self) -> int:
        return self._unpack(_U16)

    def read_u32(self) -> int:
        return self._unpack(_U32)

    def read_i32(self) -> int:
        return self._unpack(_I32)

    def read_u64(self) -> int:
        return self._unpack(_U64)

    def read_i64(self) -> int:
        return self._unpack(_I64)

    def read_compact_size(self, limit: int = MAX_SIZE) -> int:
        first = self.read_u8()
        if first < 0xFD:
            n = first
        elif first == 0xFD:
            n = self.read_u16()
            if n < 0xFD:
                raise ParseError("non-canonical compact size")
        elif first == 0xFE:
            n = self.read_u32()
            if n <= 0xFFFF:
                raise ParseError("non-canonical compact size")
        else:
            n = self.read_u64()
            if n <= 0xFFFFFFFF:
                raise ParseError("non-canonical compact size")
        if n > limit:
            raise ParseError(f"size {n} exceeds limit {limit}")
        return n

    def read_varbytes(self, limit: int = MAX_SIZE) -> bytes:
        n = self.read_compact_size(limit)
        return self.read(n)

    def read_count(self, min_item_size: int) -> int:
        """A vector length, refused at once if the buffer cannot hold that
        many items of at least ``min_item_size`` bytes, so hostile counts
        never drive allocation or long loops."""
        n = self.read_compact_size()
        if min_item_size > 0 and n * min_item_size > self.remaining():
            raise ParseError(f"count {n} exceeds what the remaining {self.remaining()} bytes can hold")
        return n

    def read_stack(self) -> tuple[bytes, ...]:
        n = self.read_count(1)
        return tuple(self.read_varbytes() for _ in range(n))

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise ParseError(f"{self._end - self._pos} trailing bytes")


def parse_exact(data: bytes, parse: Callable[[ByteReader], T]) -> T:
    """Parse ``data`` completely with ``parse``; trailing bytes are an error."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError(f"expected bytes, got {type(data).__name__}")
    reader = ByteReader(bytes(data))
    obj = parse(reader)
    reader.expect_end()
    return obj
