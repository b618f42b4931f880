# SPDX-License-Identifier: Apache-2.0
"""A fake kernel for netlink unit tests: sockets that answer requests with recorded bytes.

:class:`RecordedSocket` answers each request whose (message type, family byte) it knows with the
recorded answer, every message's sequence number rewritten to the request's, one datagram per
message; :class:`FakeNs` is a namespace handle whose ``open_nsfd`` gives a real fd on /dev/null.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import deque
from collections.abc import Mapping, Sequence

from otel_kubeskoop.netlink.core import iter_messages


class FakeNs:
    def __init__(self, inode: int, is_host: bool = False, gone: BaseException | None = None) -> None:
        self.inode = inode
        self.is_host = is_host
        self.gone = gone
        self.opened = 0

    def open_nsfd(self) -> int:
        if self.gone is not None:
            raise self.gone
        self.opened += 1
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)


def with_seq(buf: bytes, seq: int) -> list[bytes]:
    """The messages of ``buf``, one per datagram, with sequence number ``seq``."""
    out = []
    for m in iter_messages(buf):
        raw = bytearray(buf[m.start - 16:m.end])
        struct.pack_into("=I", raw, 8, seq)
        out.append(bytes(raw))
    return out


class RecordedSocket:
    """Answers requests from ``answers``: {(nlmsg_type, first payload byte): recorded bytes}."""

    def __init__(self, answers: Mapping[tuple[int, int], bytes]) -> None:
        self.answers = dict(answers)
        self.queue: deque[bytes] = deque()
        self.requests: list[bytes] = []
        self.closed = False
        self.timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def send(self, data: bytes) -> int:
        self.requests.append(data)
        _len, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
        key = (mtype, data[16] if len(data) > 16 else 0)
        if key not in self.answers:
            raise OSError(95, f"no recorded answer for {key}")
        self.queue.extend(with_seq(self.answers[key], seq))
        return len(data)

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        if not self.queue:
            raise TimeoutError("nothing more recorded")
        data = self.queue.popleft()
        n = min(len(data), nbytes or len(buf))
        buf[:n] = data[:n]
        return len(data) if flags & socket.MSG_TRUNC else n

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self.closed = True


def opener(factory) -> object:
    """A :class:`NetnsSockets` opener making ``factory(inode)`` sockets, recording the batches."""
    batches: list[list[int]] = []

    def open_(targets: Sequence[tuple[int, int]], protocol: int) -> list:
        batches.append([inode for _fd, inode in targets])
        for fd, _inode in targets:
            os.fstat(fd)  # the fd is still open while the opener runs
        return [factory(inode) for _fd, inode in targets]

    open_.batches = batches  # type: ignore[attr-defined]
    return open_
