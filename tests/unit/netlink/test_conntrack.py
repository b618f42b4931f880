# SPDX-License-Identifier: Apache-2.0
"""ctnetlink statistics and events against bytes recorded from Linux 6.18 (ctnetlink_*.dump, made
by record_netlink.py), and against pyroute2's own decoder of the same bytes."""

from __future__ import annotations

from dataclasses import asdict

import socket
import struct
from pathlib import Path

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_GET_STATS,
    IPCTNL_MSG_CT_GET_STATS_CPU,
    nfct_msg,
    nfct_stats,
    nfct_stats_cpu,
)

from otel_kubeskoop.netlink import conntrack
from otel_kubeskoop.netlink.core import DecodeError, iter_messages
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.fakes import RecordedSocket

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"
CT = 1 << 8  # NFNL_SUBSYS_CTNETLINK


def test_recorded_per_cpu_stats_are_summed():
    raw, expected = read_dump(DUMPS / "ctnetlink_stats_cpu.dump")
    got = conntrack.parse_stats_cpu(raw)
    assert got == expected and got["invalid"] == 6
    # pyroute2's decoder, message by message
    total = dict.fromkeys(conntrack.CPU_COUNTERS, 0)
    cpus = 0
    for m in iter_messages(raw):
        if m.type != CT | IPCTNL_MSG_CT_GET_STATS_CPU:
            continue
        msg = nfct_stats_cpu(raw[m.start - 16:m.end])
        msg.decode()
        for name, attr in conntrack.CPU_COUNTERS.items():
            total[name] += msg.get_attr(attr) or 0
        cpus += 1
    assert {**total, "cpus": cpus} == got


def test_recorded_global_stats():
    raw, expected = read_dump(DUMPS / "ctnetlink_stats.dump")
    entries, limit = conntrack.parse_stats(raw)
    assert {"entries": entries, "max_entries": limit} == expected
    (m,) = [m for m in iter_messages(raw) if m.type == CT | IPCTNL_MSG_CT_GET_STATS]
    msg = nfct_stats(raw[m.start - 16:m.end])
    msg.decode()
    assert (msg.get_attr("CTA_STATS_GLOBAL_ENTRIES"), msg.get_attr("CTA_STATS_GLOBAL_MAX_ENTRIES")) == (entries, limit)


def _events(raw: bytes) -> list[dict]:
    out = []
    for m in iter_messages(raw):
        try:
            out.append(asdict(conntrack.parse_event(raw, m)))
        except DecodeError:
            out.append({"error": "DecodeError"})
    return out


@pytest.mark.parametrize("path", sorted(DUMPS.glob("ctnetlink_events*.dump")), ids=lambda p: p.stem)
def test_recorded_events(path: Path):
    raw, expected = read_dump(path)
    assert _events(raw) == expected


def test_events_agree_with_pyroute2():
    raw, _ = read_dump(DUMPS / "ctnetlink_events.dump")
    for m in iter_messages(raw):
        ours = conntrack.parse_event(raw, m)
        msg = nfct_msg(raw[m.start - 16:m.end])
        msg.decode()
        orig = msg.get_attr("CTA_TUPLE_ORIG")
        ip, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
        v4 = ours.family == socket.AF_INET
        assert ours.src == ip.get_attr("CTA_IP_V4_SRC" if v4 else "CTA_IP_V6_SRC")
        assert ours.dst == ip.get_attr("CTA_IP_V4_DST" if v4 else "CTA_IP_V6_DST")
        assert (ours.protocol, ours.sport, ours.dport) == (
            proto.get_attr("CTA_PROTO_NUM"), proto.get_attr("CTA_PROTO_SRC_PORT"), proto.get_attr("CTA_PROTO_DST_PORT"))
        assert (ours.status, ours.id) == (msg.get_attr("CTA_STATUS"), msg.get_attr("CTA_ID"))


def test_event_type_from_the_header_alone():
    assert conntrack.event_type(CT | 0, 0x600) == "new"  # NLM_F_CREATE|NLM_F_EXCL
    assert conntrack.event_type(CT | 0, 0) == "update"
    assert conntrack.event_type(CT | 2, 0) == "destroy"
    assert conntrack.event_type((2 << 8) | 0, 0x600) is None  # an expectation (CTNETLINK_EXP)
    assert conntrack.event_type(3, 0) is None


def test_events_that_are_not_events_or_lack_a_tuple_raise():
    nfgen = struct.pack("=BBH", 2, 0, 0)
    no_tuple = struct.pack("=IHHII", 20, CT | 2, 0, 0, 0) + nfgen
    with pytest.raises(DecodeError, match="CTA_TUPLE_ORIG"):
        conntrack.parse_event(no_tuple)
    with pytest.raises(DecodeError):
        conntrack.parse_event(struct.pack("=IHHII", 20, 3, 0, 0, 0) + nfgen)
    with pytest.raises(DecodeError):
        conntrack.parse_event(struct.pack("=IHHII", 18, CT | 2, 0, 0, 0) + nfgen[:2])


def test_requests():
    cpu = conntrack.stats_cpu_request(5)
    assert struct.unpack_from("=IHHI", cpu) == (20, CT | IPCTNL_MSG_CT_GET_STATS_CPU, 0x301, 5)
    glob = conntrack.stats_request(6)
    assert struct.unpack_from("=IHHI", glob) == (20, CT | IPCTNL_MSG_CT_GET_STATS, 0x5, 6)  # REQUEST|ACK


def test_read_stats_over_recorded_answers():
    cpu, expected = read_dump(DUMPS / "ctnetlink_stats_cpu.dump")
    glob, g = read_dump(DUMPS / "ctnetlink_stats.dump")
    sock = RecordedSocket({(CT | IPCTNL_MSG_CT_GET_STATS_CPU, 0): cpu, (CT | IPCTNL_MSG_CT_GET_STATS, 0): glob})
    st = conntrack.read_stats(sock, 11)  # type: ignore[arg-type]
    assert st == conntrack.ConntrackStats(**expected, entries=g["entries"], max_entries=g["max_entries"])
