# SPDX-License-Identifier: Apache-2.0
"""RDMA resource summary per device over RDMA netlink (``NETLINK_RDMA``, client ``RDMA_NL_NLDEV``).

pyroute2 has no RDMA family, so this is the one request the ``rdma`` probe needs, written out:
``RDMA_NLDEV_CMD_RES_GET`` with ``NLM_F_DUMP``, what ``rdma resource show`` (iproute2) sends. The
kernel (``res_get_common_dumpit`` / ``fill_res_info`` in ``drivers/infiniband/core/nldev.c``)
answers one message per device::

    nlmsghdr  type = RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_RES_GET) = (5 << 10) + 9
    RDMA_NLDEV_ATTR_DEV_INDEX     u32
    RDMA_NLDEV_ATTR_DEV_NAME      NUL-terminated string
    RDMA_NLDEV_ATTR_RES_SUMMARY   nested
      RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY   nested, one per resource type
        RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_NAME  string: pd, cq, qp, cm_id, mr, ctx, srq
        RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_CURR  u64 (after a RDMA_NLDEV_ATTR_PAD where needed)
        RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_MAX   u64, newer kernels (ignored)

then ``NLMSG_DONE``. Attribute numbers are those of ``include/uapi/rdma/rdma_netlink.h`` (enum
``rdma_nldev_attr``). Decoding (:func:`decode_res_summary`) is pure and tested against ``.dump``
files; :func:`dump_res_summary` does the socket I/O. A kernel without ``CONFIG_INFINIBAND`` has no
``NETLINK_RDMA``: the socket fails with ``EPROTONOSUPPORT``. See
https://man7.org/linux/man-pages/man8/rdma-resource.8.html.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from dataclasses import dataclass, field

NETLINK_RDMA = 20
RDMA_NL_NLDEV = 5
RDMA_NLDEV_CMD_RES_GET = 9
RES_GET_TYPE = (RDMA_NL_NLDEV << 10) + RDMA_NLDEV_CMD_RES_GET

RDMA_NLDEV_ATTR_PAD = 0
RDMA_NLDEV_ATTR_DEV_INDEX = 1
RDMA_NLDEV_ATTR_DEV_NAME = 2
RDMA_NLDEV_ATTR_RES_SUMMARY = 15
RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY = 16
RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_NAME = 17
RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_CURR = 18

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")


class DecodeError(ValueError):
    """Bytes that are not a well-formed RDMA netlink answer."""


@dataclass(frozen=True, slots=True)
class ResSummary:
    """One device's resource counts, by the kernel's names (``qp``, ``mr``...)."""

    index: int
    name: str
    counts: dict[str, int] = field(default_factory=dict)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    """(type, payload) of every attribute in ``data[start:end]``."""
    out = []
    pos = start
    while pos + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, pos)
        if length < _NLATTR.size or pos + length > end:
            raise DecodeError(f"attribute at offset {pos} has length {length} past its container")
        out.append((kind & NLA_TYPE_MASK, data[pos + _NLATTR.size:pos + length]))
        pos += _align(length)
    return out


def _u(payload: bytes, size: int, what: str) -> int:
    if len(payload) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(payload)}")
    return int.from_bytes(payload, sys.byteorder)  # netlink attributes are in host order


def _summary(payload: bytes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, entry in _attrs(payload, 0, len(payload)):
        if kind != RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY:
            continue
        name: str | None = None
        curr: int | None = None
        for k, v in _attrs(entry, 0, len(entry)):
            if k == RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_NAME:
                name = v.rstrip(b"\0").decode("ascii", "replace")
            elif k == RDMA_NLDEV_ATTR_RES_SUMMARY_ENTRY_CURR:
                curr = _u(v, 8, "RES_SUMMARY_ENTRY_CURR")
        if name is None or curr is None:
            raise DecodeError("summary entry without a name or a current count")
        counts[name] = curr
    return counts


def decode_res_summary(data: bytes) -> tuple[list[ResSummary], bool]:
    """Decode the messages in ``data`` (one or more ``recv`` buffers' worth, concatenated).

    Returns the devices found and whether ``NLMSG_DONE`` was seen. An ``NLMSG_ERROR`` with a
    non-zero error raises ``OSError`` with that errno; malformed bytes raise :class:`DecodeError`.
    """
    out: list[ResSummary] = []
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            raise DecodeError(f"message at offset {pos} has length {length} past the buffer")
        body = pos + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, body)
            if err:
                raise OSError(-err, f"RDMA netlink: {os.strerror(-err)}")
        elif kind == RES_GET_TYPE:
            index: int | None = None
            name: str | None = None
            counts: dict[str, int] = {}
            for k, v in _attrs(data, body, pos + length):
                if k == RDMA_NLDEV_ATTR_DEV_INDEX:
                    index = _u(v, 4, "DEV_INDEX")
                elif k == RDMA_NLDEV_ATTR_DEV_NAME:
                    name = v.rstrip(b"\0").decode("ascii", "replace")
                elif k == RDMA_NLDEV_ATTR_RES_SUMMARY:
                    counts = _summary(v)
            if index is None or name is None:
                raise DecodeError(f"RES_GET message at offset {pos} without a device index or name")
            out.append(ResSummary(index, name, counts))
        else:
            raise DecodeError(f"unexpected message type {kind} at offset {pos}")
        pos += _align(length)
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} trailing bytes")
    return out, False


def res_get_dump_request(seq: int) -> bytes:
    """The ``RDMA_NLDEV_CMD_RES_GET`` dump request (a bare header, as iproute2 sends it)."""
    return _NLMSGHDR.pack(_NLMSGHDR.size, RES_GET_TYPE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)


def dump_res_summary(timeout: float = 2.0) -> list[ResSummary]:
    """Every RDMA device's resource summary, from the kernel (host network namespace).

    Raises ``OSError`` (``EPROTONOSUPPORT`` without RDMA support in the kernel).
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_RDMA) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(res_get_dump_request(1))
        out: list[ResSummary] = []
        while True:
            # A datagram holds whole messages: a dump's messages never span two of them.
            found, done = decode_res_summary(sock.recv(65536))
            out += found
            if done:
                return out
