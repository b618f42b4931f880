# SPDX-License-Identifier: Apache-2.0
"""Netlink framing and attribute walking over bytes: bounded, pure, no I/O.

The protocol knowledge (message and attribute numbers, fixed-header layouts, value formats) comes
from pyroute2's message classes, which are the single source of truth here: :func:`schema` turns a
pyroute2 ``nla_map`` into ``{type number: (name, format)}`` and :func:`layout` turns its ``fields``
into byte offsets. Requests are encoded by pyroute2 (:func:`encode`). What this module adds is a
small decoder that checks every length against the buffer before reading:

- a message whose ``nlmsg_len`` is shorter than its header or runs past the buffer, an attribute
  whose ``nla_len`` does the same, or a value shorter than its format raises :class:`DecodeError`
  (pyroute2's own decoder instead logs a traceback and returns the raw bytes, which would reach the
  metrics as garbage);
- attributes of a type the schema does not know are skipped, so a newer kernel adding attributes
  changes nothing;
- it is fast enough for the per-socket hot path (about 1 us per sock_diag message, against about
  30 us for pyroute2's full decode; ``bench/tcpsummary.py``).

Netlink itself: https://docs.kernel.org/userspace-api/netlink/intro.html.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2.netlink import NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_SOCK_DIAG, NLMSG_DONE, NLMSG_ERROR, nlmsg

__all__ = [
    "NETLINK_NETFILTER",
    "NETLINK_ROUTE",
    "NETLINK_SOCK_DIAG",
    "NLA_TYPE_MASK",
    "NLM_F_DUMP_INTR",
    "NLM_F_MULTI",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "DecodeError",
    "Message",
    "NetlinkError",
    "Schema",
    "attrs",
    "encode",
    "find_attr",
    "iter_messages",
    "layout",
    "schema",
    "scalar",
    "string",
    "with_seq",
]

NLMSG_HDRLEN = 16
NLA_HDRLEN = 4
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the dump was interrupted by a change: the data may be inconsistent
# nla_type carries two flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER) above the type number.
NLA_TYPE_MASK = 0x3FFF

_HDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_INT = struct.Struct("=i")

# pyroute2 NLA format names -> struct formats, for the scalar formats the decoders use.
_SCALAR_FORMATS = {
    "uint8": "=B",
    "uint16": "=H",
    "uint32": "=I",
    "uint64": "=Q",
    "int32": "=i",
    "be16": ">H",
    "be32": ">I",
    "be64": ">Q",
}
_STRUCTS: dict[str, struct.Struct] = {name: struct.Struct(fmt) for name, fmt in _SCALAR_FORMATS.items()}


class DecodeError(ValueError):
    """Bytes that are not the netlink the decoder expects (truncated, bad length, short value)."""


class NetlinkError(OSError):
    """The kernel answered a request with an error (``NLMSG_ERROR`` or a negative ``NLMSG_DONE``)."""

    def __init__(self, code: int, what: str = "") -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}" if what else os.strerror(code))


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message inside a buffer: its header and where its payload is."""

    type: int
    flags: int
    seq: int
    start: int  # offset of the payload (after the 16-byte header)
    end: int  # offset one past the message's last byte (nlmsg_len, not aligned)


def iter_messages(buf: bytes | bytearray | memoryview) -> Iterator[Message]:
    """Every message in ``buf`` (one or more ``recv`` results joined), in order.

    Raises :class:`DecodeError` if a header is cut short or a length does not fit the buffer.
    """
    n = len(buf)
    off = 0
    while off < n:
        if n - off < NLMSG_HDRLEN:
            raise DecodeError(f"{n - off} bytes at offset {off}: shorter than a netlink header")
        length, mtype, flags, seq, _pid = _HDR.unpack_from(buf, off)
        if length < NLMSG_HDRLEN or length > n - off:
            raise DecodeError(f"message at offset {off} claims {length} bytes, {n - off} left")
        yield Message(mtype, flags, seq, off + NLMSG_HDRLEN, off + length)
        off += (length + 3) & ~3


def error_code(buf: bytes | bytearray | memoryview, msg: Message) -> int:
    """The positive errno of an ``NLMSG_ERROR`` or ``NLMSG_DONE`` message (0: success / ACK)."""
    if msg.end - msg.start < _INT.size:
        if msg.type == NLMSG_DONE:
            return 0  # some families send an empty DONE
        raise DecodeError(f"netlink error message of {msg.end - msg.start} bytes")
    (code,) = _INT.unpack_from(buf, msg.start)
    return -code if code < 0 else 0


def attrs(buf: bytes | bytearray | memoryview, start: int, end: int) -> dict[int, tuple[int, int]]:
    """``{type: (payload start, payload end)}`` of the attributes between ``start`` and ``end``.

    Types are masked with :data:`NLA_TYPE_MASK`; a repeated type keeps its last occurrence.
    Raises :class:`DecodeError` if an attribute header is cut short or its length overruns ``end``.
    """
    out: dict[int, tuple[int, int]] = {}
    off = start
    while off < end:
        if end - off < NLA_HDRLEN:
            raise DecodeError(f"{end - off} bytes at offset {off}: shorter than an attribute header")
        length, atype = _NLA.unpack_from(buf, off)
        if length < NLA_HDRLEN or length > end - off:
            raise DecodeError(f"attribute {atype & NLA_TYPE_MASK} at offset {off} claims {length} bytes, "
                              f"{end - off} left")
        out[atype & NLA_TYPE_MASK] = (off + NLA_HDRLEN, off + length)
        off += (length + 3) & ~3
    return out


def find_attr(buf: bytes | bytearray | memoryview, start: int, end: int, wanted: int) -> tuple[int, int] | None:
    """The payload span of the first attribute of type ``wanted``, or ``None``.

    Attribute headers are checked up to that attribute (the rest is not read).
    """
    # The walk is attrs()'s, written out again on purpose: sharing it through a generator made
    # both 1.5-2x slower, and they run per conntrack event and per link and qdisc message.
    off = start
    while off < end:
        if end - off < NLA_HDRLEN:
            raise DecodeError(f"{end - off} bytes at offset {off}: shorter than an attribute header")
        length, atype = _NLA.unpack_from(buf, off)
        if length < NLA_HDRLEN or length > end - off:
            raise DecodeError(f"attribute {atype & NLA_TYPE_MASK} at offset {off} claims {length} bytes, "
                              f"{end - off} left")
        if atype & NLA_TYPE_MASK == wanted:
            return off + NLA_HDRLEN, off + length
        off += (length + 3) & ~3
    return None


def scalar(buf: bytes | bytearray | memoryview, span: tuple[int, int], fmt: str) -> int:
    """The integer of pyroute2 format ``fmt`` (``"be32"``, ``"uint64"``...) at ``span``."""
    st = _STRUCTS[fmt]
    start, end = span
    if end - start < st.size:
        raise DecodeError(f"{fmt} attribute of {end - start} bytes")
    return int(st.unpack_from(buf, start)[0])


def string(buf: bytes | bytearray | memoryview, span: tuple[int, int]) -> str:
    """A NUL-terminated (or not) string attribute, decoded as UTF-8 with replacement."""
    raw = bytes(buf[span[0] : span[1]])
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Schema:
    """Attribute numbers of one pyroute2 message or NLA class."""

    names: dict[str, int]  # name -> type number
    formats: dict[int, str]  # type number -> pyroute2 format name (or nested class name)

    def __getitem__(self, name: str) -> int:
        return self.names[name]


@functools.cache
def schema(cls: type) -> Schema:
    """The attribute numbering of a pyroute2 class, read from its ``nla_map``.

    pyroute2 writes ``nla_map`` either as ``(name, format)`` pairs numbered by position or as
    ``(number, name, format)`` triples; both are handled, as in pyroute2's ``compile_nla_table``.
    """
    nla_map = cls.nla_map
    names: dict[str, int] = {}
    formats: dict[int, str] = {}
    explicit = bool(nla_map) and isinstance(nla_map[0][0], int)
    for position, item in enumerate(nla_map):
        number, name, fmt = (item[0], item[1], item[2]) if explicit else (position, item[0], item[1])
        names[name] = number
        formats[number] = fmt
    return Schema(names, formats)


@functools.cache
def layout(cls: type) -> tuple[dict[str, tuple[int, str]], int]:
    """``({field: (offset, struct format)}, size)`` of a pyroute2 class's fixed ``fields``.

    Offsets are packed (pyroute2 packs with no implicit padding; padding fields are explicit).
    """
    out: dict[str, tuple[int, str]] = {}
    off = 0
    for name, fmt in cls.fields:
        full = fmt if fmt[0] in "<>=!@" else "=" + fmt
        out[name] = (off, full)
        off += struct.calcsize(full)
    return out, off


def encode(msg: nlmsg, msg_type: int, flags: int, seq: int) -> bytes:
    """A complete request: pyroute2 ``msg`` with its netlink header filled in, encoded."""
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


_SEQ = struct.Struct("=I")


def with_seq(request: bytes, seq: int) -> bytes:
    """``request`` (encoded once, e.g. cached) with sequence number ``seq``: pyroute2's encoder
    costs 25-60 us a message, too much to pay per namespace per collection."""
    out = bytearray(request)
    _SEQ.pack_into(out, 8, seq & 0xFFFFFFFF)
    return bytes(out)


def field_reader(cls: type, *names: str) -> tuple[struct.Struct, int]:
    """A struct reading ``names`` (in layout order, contiguous or not) of ``cls``'s fixed header,
    and the header's size. Used by the hot loops: one ``unpack_from`` per message."""
    fields, size = layout(cls)
    wanted = sorted((fields[n][0], n) for n in names)
    fmt = "="
    pos = 0
    for off, name in wanted:
        if off < pos:
            raise ValueError(f"overlapping field {name}")
        f = fields[name][1]
        if f[0] in "<>!":
            raise ValueError(f"field {name} of {cls.__name__} is not native byte order: {f}")
        fmt += f"{off - pos}x" if off > pos else ""
        fmt += f.lstrip("=@")
        pos = off + struct.calcsize(f)
    return struct.Struct(fmt), size

