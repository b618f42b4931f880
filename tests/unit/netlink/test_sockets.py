# SPDX-License-Identifier: Apache-2.0
"""The per-namespace socket cache and the dump loop, without root: fake namespaces and sockets;
the real socket of the caller's own namespace needs no privilege."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from pyroute2.netlink import NETLINK_ROUTE

from otel_kubeskoop.netlink import sockets
from otel_kubeskoop.netlink.core import DecodeError, NetlinkError
from otel_kubeskoop.netlink.sockets import NetnsSockets, dump
from otel_kubeskoop.topology.netns import NetnsGone
from tests.unit.netlink.fakes import FakeNs, RecordedSocket, opener


def test_sync_opens_new_namespaces_in_one_batch_and_closes_vanished_ones():
    made: dict[int, RecordedSocket] = {}
    open_ = opener(lambda inode: made.setdefault(inode, RecordedSocket({})))
    closed: list[int] = []
    setup: list[RecordedSocket] = []
    cache = NetnsSockets(NETLINK_ROUTE, opener=open_, setup=setup.append,
                         on_close=lambda inode, sock: closed.append(inode))
    a, b, c = FakeNs(1), FakeNs(2), FakeNs(3)
    got = cache.sync({1: a, 2: b})
    assert got == {1: made[1], 2: made[2]} and open_.batches == [[1, 2]]
    assert setup == [made[1], made[2]] and made[1].timeout == sockets.DEFAULT_TIMEOUT
    assert cache.sync({1: a, 2: b}) == got and open_.batches == [[1, 2]]  # cached: no new socket
    got = cache.sync({2: b, 3: c})
    assert set(got) == {2, 3} and closed == [1] and made[1].closed
    assert open_.batches == [[1, 2], [3]] and cache.opened == 3
    cache.discard(2)
    assert made[2].closed and 2 not in cache
    cache.close()
    assert made[3].closed and len(cache) == 0 and closed == [1, 2, 3]
    assert (a.opened, b.opened, c.opened) == (1, 1, 1)


def test_failures_are_kept_per_namespace_and_retried():
    gone = FakeNs(1, gone=NetnsGone(1, "process exited"))
    refused = FakeNs(2)
    ok = FakeNs(3)
    open_ = opener(lambda inode: PermissionError(errno.EPERM, "setns") if inode == 2 else RecordedSocket({}))
    cache = NetnsSockets(NETLINK_ROUTE, opener=open_)
    got = cache.sync({1: gone, 2: refused, 3: ok})
    assert set(got) == {3}
    assert isinstance(cache.failures[1], NetnsGone) and isinstance(cache.failures[2], PermissionError)
    cache.sync({1: gone, 2: refused, 3: ok})
    assert open_.batches == [[2, 3], [2]]  # tried again next time; 3 stays cached


def test_a_failing_setup_closes_the_socket():
    sock = RecordedSocket({})

    def setup(s):
        raise OSError(errno.ENOBUFS, "no room")

    cache = NetnsSockets(NETLINK_ROUTE, opener=opener(lambda inode: sock), setup=setup)
    assert cache.sync({1: FakeNs(1)}) == {} and sock.closed
    assert isinstance(cache.failures[1], OSError)


def test_own_namespace_socket_is_made_without_setns():
    inode = sockets.own_netns_inode()
    fd = open("/dev/null", "rb")
    try:
        (sock,) = sockets.open_netlink_sockets([(fd.fileno(), inode)], NETLINK_ROUTE)
    finally:
        fd.close()
    assert isinstance(sock, socket.socket)
    with sock:
        assert sockets.socket_netns_inode(sock) == inode


def _msg(mtype: int, payload: bytes, seq: int, flags: int = 2) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


class Pair:
    """A datagram socketpair: dump() talks on ``near``; tests queue answers on ``far``."""

    def __init__(self) -> None:
        self.near, self.far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.near.settimeout(1.0)

    def close(self) -> None:
        self.near.close()
        self.far.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def test_dump_joins_datagrams_up_to_done(pair):
    pair.far.send(_msg(36, b"a" * 4, 5))
    pair.far.send(_msg(36, b"b" * 4, 4))  # an answer to an earlier request: skipped
    pair.far.send(_msg(36, b"c" * 4, 5) + _msg(3, struct.pack("=i", 0), 5))
    got = dump(pair.near, b"request", 5)
    assert pair.far.recv(100) == b"request"
    assert got == _msg(36, b"a" * 4, 5) + _msg(36, b"c" * 4, 5) + _msg(3, struct.pack("=i", 0), 5)


def test_dump_raises_kernel_errors(pair):
    pair.far.send(_msg(2, struct.pack("=i", -errno.EOPNOTSUPP) + b"\0" * 16, 9))
    with pytest.raises(NetlinkError) as exc:
        dump(pair.near, b"r", 9, what="IPCTNL_MSG_CT_GET_STATS")
    assert exc.value.errno == errno.EOPNOTSUPP and "IPCTNL_MSG_CT_GET_STATS" in str(exc.value)
    pair.far.send(_msg(3, struct.pack("=i", -errno.EINTR), 10))
    with pytest.raises(NetlinkError):
        dump(pair.near, b"r", 10)


def test_dump_rejects_malformed_and_oversized_datagrams(pair):
    pair.far.send(struct.pack("=IHHII", 200, 36, 2, 3, 0))
    with pytest.raises(DecodeError):
        dump(pair.near, b"r", 3)
    pair.far.send(_msg(36, b"x" * (sockets.RECV_BUFFER + 8), 4))
    with pytest.raises(DecodeError, match="truncated"):
        dump(pair.near, b"r", 4)


def test_dump_times_out(pair):
    pair.near.settimeout(0.05)
    with pytest.raises(TimeoutError):
        dump(pair.near, b"r", 1)
