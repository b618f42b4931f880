# SPDX-License-Identifier: Apache-2.0
"""Netlink sockets inside other network namespaces, cached per namespace; request/dump I/O.

A netlink socket belongs to the network namespace its creator was in when it called ``socket(2)``,
and keeps talking to that namespace for its whole life, whichever thread uses it later. So a
socket for a pod's namespace is made by entering the namespace only for the ``socket()`` call:

- :func:`open_netlink_sockets` creates each socket inside its target namespace with
  :func:`~otel_kubeskoop.topology.nsexec.run_in_netns` (one short-lived thread that ``setns(2)``s
  into each namespace in turn, through an fd from :meth:`Netns.open_nsfd
  <otel_kubeskoop.topology.netns.Netns.open_nsfd>`, checked against the inode). Every socket is
  checked afterwards with ``ioctl(SIOCGSKNS)``, which names the namespace the socket really belongs
  to. A socket for the calling thread's own namespace needs no ``setns`` (and no privilege).
- pyroute2's ``netns=`` argument is not used: pyroute2 0.9 creates such sockets in a forked child
  process and passes the fd back (``pyroute2.netns.create_socket``), one process per socket; its
  ``pushns``/``popns`` switch the calling thread and keep a process-global stack.
- :class:`NetnsSockets` keeps one socket per namespace (per protocol, per user), opened for new
  namespaces in one batch and closed as soon as a namespace disappears from the scan. A socket
  holds a reference on its namespace, so closing promptly lets the kernel free deleted namespaces.

:func:`dump` sends one request and reads the multipart answer up to ``NLMSG_DONE``, returning the
raw bytes for the pure decoders of this package (:func:`dump_datagrams`: one datagram at a time). See
https://man7.org/linux/man-pages/man7/netlink.7.html and
https://man7.org/linux/man-pages/man2/setns.2.html.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from otel_kubeskoop.netlink.core import (
    NLMSG_DONE,
    NLMSG_ERROR,
    DecodeError,
    Message,
    NetlinkError,
    error_code,
)
from otel_kubeskoop.topology.netns import NetnsGone
from otel_kubeskoop.topology.nsexec import run_in_netns

__all__ = [
    "NetnsSockets",
    "NsHandle",
    "dump",
    "dump_datagrams",
    "open_netlink_sockets",
    "own_netns_inode",
    "receive",
    "socket_netns_inode",
]

log = logging.getLogger(__name__)

#: ``ioctl`` returning an fd on the network namespace of a socket (``<linux/sockios.h>``, 4.9+).
SIOCGSKNS = 0x894C
#: Receive buffer for one ``recv``: the kernel fills dump datagrams up to about 32 KiB.
RECV_BUFFER = 1 << 16
DEFAULT_TIMEOUT = 2.0
_THREAD_SELF_NET = "/proc/thread-self/ns/net"


class NsHandle(Protocol):
    """What this module needs of a namespace handle (:class:`otel_kubeskoop.topology.netns.Netns`)."""

    @property
    def inode(self) -> int: ...

    def open_nsfd(self) -> int: ...


def own_netns_inode() -> int:
    """The network namespace inode of the calling thread."""
    return os.stat(_THREAD_SELF_NET).st_ino


def socket_netns_inode(sock: socket.socket) -> int:
    """The inode of the network namespace ``sock`` belongs to (``ioctl(SIOCGSKNS)``)."""
    fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _new_socket(protocol: int) -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)


def open_netlink_sockets(targets: Sequence[tuple[int, int]], protocol: int) -> list[socket.socket | BaseException]:
    """One ``AF_NETLINK`` socket of ``protocol`` in each target namespace, in order.

    ``targets`` are ``(nsfd, inode)`` pairs; the caller keeps and closes the fds. A target whose
    socket cannot be made gets the exception in its place. A target in the caller's own
    namespace (by its inode) is made there without ``setns``, so it needs no privilege.
    """
    own = own_netns_inode()
    made = run_in_netns([(None if inode == own else fd, functools.partial(_new_socket, protocol))
                         for fd, inode in targets], what=f"netlink sockets (protocol {protocol})")
    out: list[socket.socket | BaseException] = []
    for (_fd, inode), result in zip(targets, made):
        if isinstance(result, socket.socket):
            try:
                found = socket_netns_inode(result)
            except OSError as exc:
                result.close()
                result = exc
            else:
                if found != inode:
                    result.close()
                    result = OSError(errno.EINVAL, f"socket made for namespace {inode} is in {found}")
        out.append(result)
    return out


class NetnsSockets:
    """One netlink socket per network namespace, for one protocol and one user.

    :meth:`sync` is called once per collection with the namespaces of the scan: sockets of
    namespaces no longer present are closed (``on_close`` sees them first), sockets for new ones
    are opened in one batch and passed to ``setup`` (bind, buffer sizes...). :meth:`discard`
    closes one socket after an I/O error; the next :meth:`sync` opens a fresh one.
    """

    def __init__(self, protocol: int, *, setup: Callable[[socket.socket], None] | None = None,
                 on_close: Callable[[int, socket.socket], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 opener: Callable[[Sequence[tuple[int, int]], int], list[socket.socket | BaseException]]
                 = open_netlink_sockets) -> None:
        self.protocol = protocol
        self.timeout = timeout
        self._setup = setup
        self._on_close = on_close
        self._opener = opener
        self._socks: dict[int, socket.socket] = {}
        #: Why a namespace has no socket after the last :meth:`sync` (gone, no permission...).
        self.failures: dict[int, BaseException] = {}
        self.opened = 0  # sockets opened since creation (self-check for tests and benchmarks)

    def __len__(self) -> int:
        return len(self._socks)

    def __contains__(self, inode: object) -> bool:
        return inode in self._socks

    def get(self, inode: int) -> socket.socket | None:
        return self._socks.get(inode)

    def items(self) -> list[tuple[int, socket.socket]]:
        return list(self._socks.items())

    def sync(self, namespaces: Mapping[int, NsHandle]) -> dict[int, socket.socket]:
        """Close sockets of vanished namespaces, open sockets for new ones; return ``{inode: socket}``."""
        for inode in [i for i in self._socks if i not in namespaces]:
            self.discard(inode)
        self.failures = {}
        missing = [ns for inode, ns in namespaces.items() if inode not in self._socks]
        if missing:
            self._open(missing)
        return dict(self._socks)

    def _open(self, handles: Sequence[NsHandle]) -> None:
        targets: list[tuple[int, int]] = []
        try:
            for ns in handles:
                try:
                    targets.append((ns.open_nsfd(), ns.inode))
                except (NetnsGone, OSError) as exc:
                    self.failures[ns.inode] = exc
            results = self._opener(targets, self.protocol) if targets else []
        finally:
            for fd, _inode in targets:
                os.close(fd)
        for (_fd, inode), result in zip(targets, results):
            if isinstance(result, BaseException):
                self.failures[inode] = result
                continue
            try:
                result.settimeout(self.timeout)
                if self._setup is not None:
                    self._setup(result)
            except OSError as exc:
                result.close()
                self.failures[inode] = exc
                continue
            self._socks[inode] = result
            self.opened += 1

    def discard(self, inode: int) -> None:
        """Close the socket of ``inode`` (if any)."""
        sock = self._socks.pop(inode, None)
        if sock is None:
            return
        if self._on_close is not None:
            try:
                self._on_close(inode, sock)
            except Exception as exc:  # a callback failure must not leak the socket
                log.debug("on_close for namespace %d: %s", inode, exc)
        sock.close()

    def close(self) -> None:
        """Close every socket. Idempotent."""
        for inode in list(self._socks):
            self.discard(inode)


def receive(sock: socket.socket, *, what: str = "netlink") -> Iterator[bytes]:
    """Datagrams from ``sock`` as they arrive, each one whole, until the caller stops.

    A datagram larger than :data:`RECV_BUFFER` raises :class:`DecodeError` (``MSG_TRUNC`` tells the
    real size); the socket's timeout raises ``TimeoutError``.
    """
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf, RECV_BUFFER, socket.MSG_TRUNC)
        if n > RECV_BUFFER:
            raise DecodeError(f"{what}: datagram of {n} bytes truncated to {RECV_BUFFER}")
        yield bytes(view[:n])


_HEAD = struct.Struct("=IHHI")  # nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq


def dump(sock: socket.socket, request: bytes, seq: int, *, what: str = "request") -> bytes:
    """Send ``request`` (sequence number ``seq``) and return every answer datagram joined.

    Reads up to ``NLMSG_DONE`` (or the ACK of a non-dump request). Datagrams answering another
    sequence number (an earlier request) are skipped. Raises :class:`NetlinkError` for a kernel
    error, :class:`DecodeError` for a malformed or truncated datagram, ``TimeoutError`` (the
    socket's timeout) if the kernel does not finish. After an exception the socket may still hold
    part of the answer: the caller should discard it.
    """
    return b"".join(dump_datagrams(sock, request, seq, what=what))


def dump_datagrams(sock: socket.socket, request: bytes, seq: int, *, what: str = "request") -> Iterator[bytes]:
    """:func:`dump`, one answer datagram at a time, so that a large dump is decoded as it arrives.

    A caller that stops before the end leaves the rest of the answer queued on the socket (the
    kernel goes on filling it as it is read), so it should discard the socket.
    """
    sock.send(request)
    unpack = _HEAD.unpack_from
    for chunk in receive(sock, what=what):
        n = len(chunk)
        off = 0
        done = stale = False
        while off < n:
            if n - off < 16:
                raise DecodeError(f"{what}: {n - off} bytes at offset {off}: shorter than a netlink header")
            length, mtype, _flags, mseq = unpack(chunk, off)
            if length < 16 or length > n - off:
                raise DecodeError(f"{what}: message at offset {off} claims {length} bytes, {n - off} left")
            if mseq != seq:
                stale = True
                break
            if mtype == NLMSG_ERROR or mtype == NLMSG_DONE:
                code = error_code(chunk, Message(mtype, 0, mseq, off + 16, off + length))
                if code:
                    raise NetlinkError(code, what)
                done = True
            off += (length + 3) & ~3
        if not stale:
            yield chunk
        if done:
            return
