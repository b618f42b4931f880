# SPDX-License-Identifier: Apache-2.0
"""sock_diag TCP summary against bytes recorded from Linux 6.18 (tests/fixtures/netlink/sock_diag_*.dump,
made by record_netlink.py), and against pyroute2's own full decoder of the same bytes."""

from __future__ import annotations

from dataclasses import asdict

import errno
import socket
import struct
from pathlib import Path

import pytest
from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, MarshalDiag, inet_diag_req

from otel_kubeskoop.netlink import sock_diag
from otel_kubeskoop.netlink.core import DecodeError, NetlinkError
from otel_kubeskoop.netlink.sock_diag import STATES_MASK, TCP_STATES, parse_tcp_summary, read_tcp_summary
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.fakes import RecordedSocket

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"


@pytest.mark.parametrize("path", sorted(DUMPS.glob("sock_diag_*.dump")), ids=lambda p: p.stem)
def test_recorded_dumps(path: Path):
    raw, expected = read_dump(path)
    if expected == {"error": "DecodeError"}:
        with pytest.raises(DecodeError):
            parse_tcp_summary(raw)
    else:
        assert asdict(parse_tcp_summary(raw)) == expected


@pytest.mark.parametrize("name", ["sock_diag_tcp_v4.dump", "sock_diag_tcp_v6.dump"])
def test_summary_agrees_with_pyroute2_full_decode(name: str):
    raw, _ = read_dump(DUMPS / name)
    ours = parse_tcp_summary(raw)
    states = dict.fromkeys(TCP_STATES.values(), 0)
    rx = tx = listen = 0
    messages = [m for m in MarshalDiag().parse(raw) if m["header"]["type"] == SOCK_DIAG_BY_FAMILY]
    assert messages and all(m["header"]["error"] is None for m in messages)
    for m in messages:
        state = 3 if m["idiag_state"] == 12 else m["idiag_state"]
        states[TCP_STATES[state]] += 1
        if state == 10:
            listen += m["idiag_rqueue"]
        else:
            rx += m["idiag_rqueue"]
            tx += m["idiag_wqueue"]
    assert (dict(ours.states), ours.rx_queue, ours.tx_queue, ours.listen_queue) == (states, rx, tx, listen)
    assert ours.sockets == len(messages)


def test_request_is_pyroute2s_inet_diag_req():
    raw = sock_diag.inet_diag_request(socket.AF_INET6, 42)
    length, mtype, flags, seq, _pid = struct.unpack_from("=IHHII", raw)
    assert (length, mtype, flags, seq) == (72, SOCK_DIAG_BY_FAMILY, 0x301, 42)
    req = inet_diag_req(raw)
    req.decode()
    assert (req["sdiag_family"], req["sdiag_protocol"], req["idiag_ext"]) == (socket.AF_INET6, socket.IPPROTO_TCP, 0)
    assert req["idiag_states"] == STATES_MASK == 0x1FFE  # states 1..12: not TCP_BOUND_INACTIVE (13)


def test_listen_utilization_is_the_fullest_listener():
    def diag(state: int, rq: int, wq: int) -> bytes:
        body = bytes([2, state]) + b"\0" * 54 + struct.pack("=II", rq, wq) + b"\0" * 8
        return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body

    s = parse_tcp_summary(diag(10, 2, 8) + diag(10, 5, 4) + diag(10, 1, 0) + diag(12, 0, 0) + diag(1, 7, 9))
    assert s.listen_queue == 8 and s.listen_utilization == 1.25  # 5/4: that accept queue is full
    assert s.states["syn_received"] == 1 and s.states["listen"] == 3  # NEW_SYN_RECV is SYN_RECV
    assert (s.rx_queue, s.tx_queue) == (7, 9)


def _answers(v6: bytes | None) -> dict:
    v4, _ = read_dump(DUMPS / "sock_diag_tcp_v4.dump")
    out = {(SOCK_DIAG_BY_FAMILY, socket.AF_INET): v4}
    if v6 is not None:
        out[(SOCK_DIAG_BY_FAMILY, socket.AF_INET6)] = v6
    return out


def test_read_combines_both_families():
    v6, expected6 = read_dump(DUMPS / "sock_diag_tcp_v6.dump")
    got = read_tcp_summary(RecordedSocket(_answers(v6)), 7)  # type: ignore[arg-type]
    assert got.states["listen"] == 3 and got.rx_queue == 150 + expected6["rx_queue"]


def test_a_namespace_without_ipv6_still_reports_ipv4():
    no_ipv6 = struct.pack("=IHHII", 36, 2, 0, 0, 0) + struct.pack("=i", -errno.EAFNOSUPPORT) + b"\0" * 16
    got = read_tcp_summary(RecordedSocket(_answers(no_ipv6)), 7)  # type: ignore[arg-type]
    assert got.states["listen"] == 2 and got.rx_queue == 150
    other = struct.pack("=IHHII", 36, 2, 0, 0, 0) + struct.pack("=i", -errno.EPERM) + b"\0" * 16
    with pytest.raises(NetlinkError):
        read_tcp_summary(RecordedSocket(_answers(other)), 7)  # type: ignore[arg-type]
