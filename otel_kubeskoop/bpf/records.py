# SPDX-License-Identifier: Apache-2.0
"""Ring-buffer records and map entries as ctypes mirrors (``otel_kubeskoop/bpf/generated/``):
decoding bytes, and the mirrors as plain data for tests and dumps. Records are little-endian
(x86_64, arm64)."""

from __future__ import annotations

import ctypes
import struct
import sys
import time
from typing import Any, TypeVar

__all__ = ["DecodeError", "RecordLayout", "decode", "decode_exact", "ktime_to_unix_ns", "to_dict"]

_T = TypeVar("_T", bound=ctypes.Structure)


class DecodeError(ValueError):
    """A ring-buffer record that is not the struct it should hold."""


def decode(cls: type[_T], raw: bytes) -> _T:
    """The record at the start of ``raw`` (a ring-buffer sample may carry trailing padding)."""
    size = ctypes.sizeof(cls)
    if len(raw) < size:
        raise DecodeError(f"{cls.__name__}: {len(raw)} bytes, need {size}")
    return cls.from_buffer_copy(raw, 0) if len(raw) == size else cls.from_buffer_copy(raw[:size])


def decode_exact(cls: type[_T], raw: bytes) -> _T:
    """The record ``raw`` holds, which must be exactly one ``cls``."""
    size = ctypes.sizeof(cls)
    if len(raw) != size:
        raise DecodeError(f"{cls.__name__}: record of {len(raw)} bytes, expected {size}")
    return cls.from_buffer_copy(raw)


def to_dict(value: Any) -> Any:
    """A mirror as plain data (dicts, ints, lists; ``char`` arrays as str) for tests and dumps."""
    if isinstance(value, ctypes.Structure):
        return {name: to_dict(getattr(value, name)) for name, *_ in value._fields_}
    if isinstance(value, bytes):  # c_char arrays read as bytes up to the first NUL
        return value.decode(errors="replace")
    if isinstance(value, ctypes.Array):
        return [to_dict(item) for item in value]
    return value


def ktime_to_unix_ns(ts_ns: int) -> int:
    """A ``bpf_ktime_get_ns()`` timestamp (CLOCK_MONOTONIC) as nanoseconds since the epoch."""
    return ts_ns + time.time_ns() - time.monotonic_ns()


# struct codes of ctypes scalars by (size, signed): ctypes' own codes name C types whose size
# differs from struct's standard sizes (c_uint64 is "L", 8 bytes, where "<L" is 4).
_SCALAR = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
           (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}
_SIGNED = frozenset("bhilq")


def _layout(cls: Any, prefix: str) -> tuple[list[tuple[int, str, str]], int]:
    """(offset, struct code, dotted name) of every scalar of a mirror, nested structs flattened,
    byte arrays as one ``Ns`` field; and the mirror's size."""
    out = []
    for name, ftype, *_ in cls._fields_:
        offset, full = getattr(cls, name).offset, f"{prefix}{name}"
        if issubclass(ftype, ctypes.Structure):
            out += [(offset + o, code, n) for o, code, n in _layout(ftype, f"{full}.")[0]]
        elif issubclass(ftype, ctypes.Array):
            item = ftype._type_
            if ctypes.sizeof(item) != 1 or issubclass(item, (ctypes.Structure, ctypes.Array)):
                raise TypeError(f"{cls.__name__}.{name}: only byte arrays are laid out flat")
            out.append((offset, f"{ftype._length_}s", full))
        elif ftype._type_ == "?":
            out.append((offset, "?", full))
        else:
            out.append((offset, _SCALAR[(ctypes.sizeof(ftype), ftype._type_ in _SIGNED)], full))
    return out, ctypes.sizeof(cls)


class RecordLayout:
    """A ring-buffer record mirror as one precompiled ``struct``: decoding a record is one
    ``unpack`` into a flat tuple (no ctypes object per record). ``index[name]`` is a field's
    position (nested fields dotted: ``hdr.type``; byte arrays come as bytes)."""

    def __init__(self, cls: type[ctypes.Structure]) -> None:
        swapped = hasattr(cls, "_swappedbytes_")  # ctypes marks structures of the other byte order
        if swapped == (sys.byteorder == "little"):
            raise TypeError(f"{cls.__name__}: not a little-endian mirror")
        fields, size = _layout(cls, "")
        fmt, at = ["<"], 0
        for offset, code, _ in fields:
            if offset > at:
                fmt.append(f"{offset - at}x")
            fmt.append(code)
            at = offset + struct.calcsize("<" + code)
        if size > at:
            fmt.append(f"{size - at}x")
        self.name = cls.__name__
        self.struct = struct.Struct("".join(fmt))
        self.size = self.struct.size
        if self.size != size:
            raise TypeError(f"{cls.__name__}: laid out in {self.size} bytes, the mirror has {size}")
        self.index = {name: i for i, (_, _, name) in enumerate(fields)}

    def unpack(self, raw: bytes) -> tuple[Any, ...]:
        """The fields of the record ``raw``, which must be exactly one record."""
        if len(raw) != self.size:
            raise DecodeError(f"{self.name}: record of {len(raw)} bytes, expected {self.size}")
        return self.struct.unpack(raw)

