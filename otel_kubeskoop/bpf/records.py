# SPDX-License-Identifier: Apache-2.0
"""Ring-buffer records and map entries as ctypes mirrors (``otel_kubeskoop/bpf/generated/``):
decoding bytes, and the mirrors as plain data for tests and dumps. Records are little-endian
(x86_64, arm64)."""

from __future__ import annotations

import ctypes
import time
from typing import Any, TypeVar

__all__ = ["DecodeError", "decode", "decode_exact", "ktime_to_unix_ns", "to_dict"]

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
