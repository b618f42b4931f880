# SPDX-License-Identifier: Apache-2.0
"""ctypes mirrors of the kernel <-> user-space types in ``bpf/include/events.h`` and ``bpf/*.h``.

One class per shared struct or enum, with the C name and C member names, written once here
(style.md rule 6). ``tests/privileged/bpf/test_layouts_btf.py`` checks every class listed in
:data:`STRUCTS` and :data:`ENUMS` against the BTF of the compiled objects: size and every field
offset, every enum member and value. Records are little-endian (x86_64, arm64).
"""

from __future__ import annotations

import ctypes
import enum
import time
from typing import Any, TypeVar

__all__ = [
    "ENUMS",
    "STRUCTS",
    "DecodeError",
    "EventHeader",
    "EventLossReason",
    "SelftestEvent",
    "SelftestEventType",
    "SelftestKey",
    "decode",
    "ktime_to_unix_ns",
    "to_dict",
]

_T = TypeVar("_T", bound=ctypes.Structure)

_u8, _u16, _u32, _u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class DecodeError(ValueError):
    """A ring-buffer record too short for the struct it should hold."""


# --- bpf/include/events.h -------------------------------------------------------------------


class EventHeader(ctypes.LittleEndianStructure):
    """``struct event_header``: first member of every ring-buffer record."""

    _fields_ = [
        ("ts_ns", _u64),  # bpf_ktime_get_ns(), CLOCK_MONOTONIC
        ("netns", _u32),  # network namespace inode; 0 when unknown
        ("type", _u16),  # the probe's event type
        ("aux", _u16),  # probe-specific
    ]


class EventLossReason(enum.IntEnum):
    """``enum event_loss_reason``: index into a probe's per-CPU ``losses`` array."""

    EVENT_LOSS_RINGBUF_FULL = 0
    EVENT_LOSS_RATE_LIMITED = 1
    EVENT_LOSS__MAX = 2


# --- bpf/selftest.h -------------------------------------------------------------------------


class SelftestEventType(enum.IntEnum):
    """``enum selftest_event_type``."""

    SELFTEST_EVENT_RESET = 1
    SELFTEST_EVENT_DROP = 2


class SelftestKey(ctypes.LittleEndianStructure):
    """``struct selftest_key``: key of the selftest ``counts`` map."""

    _fields_ = [("netns", _u32), ("type", _u32)]


class SelftestEvent(ctypes.LittleEndianStructure):
    """``struct selftest_event``: a selftest ring-buffer record."""

    _fields_ = [
        ("hdr", EventHeader),
        ("pid", _u32),
        ("drop_reason", _u32),
        ("family", _u16),
        ("sport", _u16),
        ("dport", _u16),
        ("protocol", _u16),
        ("saddr", _u8 * 16),
        ("daddr", _u8 * 16),
        ("comm", ctypes.c_char * 16),
    ]


#: C struct name -> mirror, for the BTF check.
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "event_header": EventHeader,
    "selftest_key": SelftestKey,
    "selftest_event": SelftestEvent,
}

#: C enum name -> mirror, for the BTF check.
ENUMS: dict[str, type[enum.IntEnum]] = {
    "event_loss_reason": EventLossReason,
    "selftest_event_type": SelftestEventType,
}


# --- decoding -------------------------------------------------------------------------------


def decode(cls: type[_T], raw: bytes) -> _T:
    """The record at the start of ``raw`` (a ring-buffer sample may carry trailing padding)."""
    size = ctypes.sizeof(cls)
    if len(raw) < size:
        raise DecodeError(f"{cls.__name__}: {len(raw)} bytes, need {size}")
    return cls.from_buffer_copy(raw, 0) if len(raw) == size else cls.from_buffer_copy(raw[:size])


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
