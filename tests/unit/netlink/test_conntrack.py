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
from otel_kubeskoop.netlink.conntrack import table
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


# The table ---------------------------------------------------------------------------------------

def _summary(raw: bytes, expected: dict, by_message: bool = False) -> dict:
    summary = table.TableSummary(expected["local"], tuple(expected["ports"]))
    parts = [raw[m.start - 16:m.end] for m in iter_messages(raw)] if by_message else [raw]
    added = sum(summary.add(part) for part in parts)
    assert added == summary.entries
    return {"local": expected["local"], "ports": expected["ports"], "entries": summary.entries,
            "sources": sorted(([src, proto, state, n] for (src, proto, state), n in summary.sources().items()),
                              key=lambda row: (row[0], row[1], row[2] or "")),
            "snat_ports": sorted([*key, n] for key, n in summary.snat_ports().items())}


@pytest.mark.parametrize("path", sorted(DUMPS.glob("ctnetlink_table*.dump")), ids=lambda p: p.stem)
def test_recorded_tables(path: Path):
    raw, expected = read_dump(path)
    if "error" in expected:
        with pytest.raises(DecodeError):
            table.TableSummary().add(raw)
        return
    assert _summary(raw, expected) == expected
    assert _summary(raw, expected, by_message=True) == expected  # one datagram at a time


def _entries(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each entry's attributes."""
    return [(m.start + 4, m.end) for m in iter_messages(raw) if m.type == CT | 0]


def test_the_common_layout_and_the_general_path_agree():
    raw, _ = read_dump(DUMPS / "ctnetlink_table.dump")
    common = [table._common_entry(raw, *span) for span in _entries(raw)]
    general = [table._entry(raw, *span) for span in _entries(raw)]
    assert [c for c in common if c is not None] == [g for c, g in zip(common, general) if c is not None]
    # Every entry with ports (IPv4 and IPv6) takes the common layout; the ICMP echo does not.
    assert [g[1] for c, g in zip(common, general) if c is None] == [socket.IPPROTO_ICMP]
    unknown, _ = read_dump(DUMPS / "ctnetlink_table_unknown_attr.dump")
    assert all(table._common_entry(unknown, *span) is None for span in _entries(unknown))


def test_table_agrees_with_pyroute2():
    raw, expected = read_dump(DUMPS / "ctnetlink_table.dump")
    local = set(expected["local"])
    sources: dict = {}
    replies: dict = {}
    snat = set()
    for m in iter_messages(raw):
        if m.type != CT | 0:
            continue
        msg = nfct_msg(raw[m.start - 16:m.end])
        msg.decode()
        orig, reply = msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY")
        v4 = msg["nfgen_family"] == socket.AF_INET
        ip, rip, rproto = orig.get_attr("CTA_TUPLE_IP"), reply.get_attr("CTA_TUPLE_IP"), reply.get_attr("CTA_TUPLE_PROTO")
        protocol = orig.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_NUM")
        info = msg.get_attr("CTA_PROTOINFO")
        state = info.get_attr("CTA_PROTOINFO_TCP").get_attr("CTA_PROTOINFO_TCP_STATE") if info else None
        key = (ip.get_attr("CTA_IP_V4_SRC" if v4 else "CTA_IP_V6_SRC"), protocol,
               conntrack.TCP_CT_STATES[state] if state is not None else None)
        sources[key] = sources.get(key, 0) + 1
        translated = rip.get_attr("CTA_IP_V4_DST" if v4 else "CTA_IP_V6_DST")
        nat = bool(msg.get_attr("CTA_STATUS") & 0x10)  # IPS_SRC_NAT
        if rproto.get_attr("CTA_PROTO_SRC_PORT") is not None and (nat or translated in local):
            rkey = (protocol, translated, rip.get_attr("CTA_IP_V4_SRC" if v4 else "CTA_IP_V6_SRC"),
                    rproto.get_attr("CTA_PROTO_SRC_PORT"))
            replies[rkey] = replies.get(rkey, 0) + 1
            if nat:
                snat.add(rkey)
    summary = table.TableSummary(local)
    summary.add(raw)
    assert summary.sources() == sources
    assert summary.snat_ports() == {k: replies[k] for k in snat}


def test_only_ports_inside_the_range_count():
    raw, expected = read_dump(DUMPS / "ctnetlink_table.dump")
    tcp = [e for e in (table._entry(raw, *span) for span in _entries(raw)) if e[1] == socket.IPPROTO_TCP]
    translated = sorted(e[6] for e in tcp if e[7])  # the masqueraded connections' source ports
    first, last = translated[0], translated[1]
    summary = table.TableSummary(expected["local"], (first, last))
    summary.add(raw)
    inside = sum(1 for e in tcp if first <= e[6] <= last)
    assert inside >= 2 and summary.snat_ports() == {(socket.IPPROTO_TCP, "10.234.2.1", "10.234.2.2", 8080): inside}
    assert summary.entries == expected["entries"]  # every entry still counts by source


def test_table_request():
    assert struct.unpack_from("=IHHI", table.table_request(9)) == (20, CT | 1, 0x301, 9)  # GET, REQUEST|DUMP
    assert table.table_request(9)[16] == socket.AF_UNSPEC
