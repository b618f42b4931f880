# SPDX-License-Identifier: Apache-2.0
"""Qdisc and link-name decoding against bytes recorded from Linux 6.18 (rtm_*.dump, made by
record_netlink.py), and against pyroute2's own decoder of the same bytes."""

from __future__ import annotations

from dataclasses import asdict

import struct
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETQDISC, RTM_NEWQDISC
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from otel_kubeskoop.netlink import tc
from otel_kubeskoop.netlink.core import DecodeError
from tests.unit.bpf.test_layouts import read_dump
from tests.unit.netlink.test_core import msg, nla

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"


def decoded(qdiscs: list[tc.Qdisc]) -> list[dict]:
    return [{**asdict(q), "handle_text": q.handle_text, "parent_text": q.parent_text} for q in qdiscs]


@pytest.mark.parametrize("path", sorted(DUMPS.glob("rtm_getqdisc_*.dump")), ids=lambda p: p.stem)
def test_recorded_qdisc_dumps(path: Path):
    raw, expected = read_dump(path)
    if expected == {"error": "DecodeError"}:
        with pytest.raises(DecodeError):
            tc.parse_qdiscs(raw)
    else:
        assert decoded(tc.parse_qdiscs(raw)) == expected


def test_recorded_link_names():
    raw, expected = read_dump(DUMPS / "rtm_getlink.dump")
    names = tc.parse_link_names(raw)
    assert {str(k): v for k, v in names.items()} == expected
    pyroute2 = {m["index"]: m.get_attr("IFLA_IFNAME") for m in MarshalRtnl().parse(raw) if m["header"]["type"] == 16}
    assert names == pyroute2


def test_qdiscs_agree_with_pyroute2():
    raw, _ = read_dump(DUMPS / "rtm_getqdisc_htb_tbf.dump")
    ours = tc.parse_qdiscs(raw)
    theirs = [m for m in MarshalRtnl().parse(raw) if m["header"]["type"] == RTM_NEWQDISC]
    assert len(ours) == len(theirs) == 4
    for q, m in zip(ours, theirs):
        stats2 = m.get_attr("TCA_STATS2")
        basic, queue = stats2.get_attr("TCA_STATS_BASIC"), stats2.get_attr("TCA_STATS_QUEUE")
        assert (q.ifindex, q.kind, q.handle, q.parent) == (m["index"], m.get_attr("TCA_KIND"), m["handle"], m["parent"])
        assert (q.bytes, q.packets) == (basic["bytes"], basic["packets"])
        assert (q.qlen, q.backlog, q.drops, q.requeues, q.overlimits) == (
            queue["qlen"], queue["backlog"], queue["drops"], queue["requeues"], queue["overlimits"])
        legacy = m.get_attr("TCA_STATS")
        assert (q.bytes, q.packets, q.drops, q.overlimits) == (
            legacy["bytes"], legacy["packets"], legacy["drop"], legacy["overlimits"])


def test_pkt64_replaces_the_wrapped_32_bit_count():
    basic = struct.pack("=QI", 10_000_000_000, (5_000_000_000) & 0xFFFFFFFF) + b"\0" * 4
    stats2 = nla(1, basic) + nla(tc.TCA_STATS_PKT64, struct.pack("=Q", 5_000_000_000))
    body = struct.pack("=BBHiIII", 0, 0, 0, 3, 0x10000, 0xFFFFFFFF, 1) + nla(1, b"fq\0") + nla(7, stats2)
    (q,) = tc.parse_qdiscs(msg(RTM_NEWQDISC, body))
    assert (q.kind, q.ifindex, q.bytes, q.packets, q.drops) == ("fq", 3, 10_000_000_000, 5_000_000_000, 0)


def test_a_qdisc_without_statistics_is_left_out_and_short_structs_raise():
    head = struct.pack("=BBHiIII", 0, 0, 0, 3, 0x10000, 0xFFFFFFFF, 1)
    assert tc.parse_qdiscs(msg(RTM_NEWQDISC, head + nla(1, b"fq\0"))) == []
    with pytest.raises(DecodeError):
        tc.parse_qdiscs(msg(RTM_NEWQDISC, head + nla(7, nla(3, b"\0" * 8))))  # TCA_STATS_QUEUE of 8 bytes
    with pytest.raises(DecodeError):
        tc.parse_qdiscs(msg(RTM_NEWQDISC, head + nla(3, b"\0" * 20)))  # legacy TCA_STATS of 20 bytes
    with pytest.raises(DecodeError):
        tc.parse_qdiscs(msg(RTM_NEWQDISC, head[:12]))  # shorter than a tcmsg


def test_handles_print_as_tc_prints_them():
    assert [tc.tc_handle(h) for h in (0xFFFFFFFF, 0, 0x10001, 0x10000, 0x1, 0xFFFFFFF1)] == [
        "root", "none", "1:1", "1:", ":1", "ffff:fff1"]


def test_requests_are_pyroute2_messages():
    q = tc.qdisc_dump_request(3)
    assert struct.unpack_from("=IHHI", q) == (36, RTM_GETQDISC, 0x301, 3)
    link = tc.link_dump_request(4)
    m = ifinfmsg(link)
    m.decode()
    assert m["header"]["type"] == RTM_GETLINK and m.get_attr("IFLA_EXT_MASK") == tc.RTEXT_FILTER_SKIP_STATS


@pytest.mark.parametrize("path", sorted(DUMPS.glob("rtm_gettfilter_*.dump")), ids=lambda p: p.stem)
def test_recorded_filter_dumps(path: Path):
    raw, expected = read_dump(path)
    assert [asdict(f) for f in tc.parse_filters(raw)] == expected


def test_filters_agree_with_pyroute2():
    raw, _ = read_dump(DUMPS / "rtm_gettfilter_clsact.dump")
    ours = tc.parse_filters(raw)
    theirs = [m for m in MarshalRtnl().parse(raw) if m["header"]["type"] == tc.RTM_NEWTFILTER and m["handle"]]
    assert len(ours) == len(theirs) == 2
    for f, m in zip(ours, theirs):
        info = m["info"]
        assert (f.ifindex, f.handle, f.parent, f.priority, f.kind) == (
            m["index"], m["handle"], m["parent"], info >> 16, m.get_attr("TCA_KIND"))
        assert f.protocol == struct.unpack(">H", struct.pack("<H", info & 0xFFFF))[0]
        assert f.name == m.get_attr("TCA_OPTIONS").get_attr("TCA_BPF_NAME")


def test_a_filter_message_shorter_than_its_tcmsg_is_a_decode_error():
    short = struct.pack("=IHHII", 24, tc.RTM_NEWTFILTER, 2, 1, 0) + bytes(8)
    with pytest.raises(DecodeError, match="tcmsg of 8 bytes, needs 20"):
        tc.parse_filters(short)


def test_bpf_filter_request_as_pyroute2_reads_it():
    raw = tc.bpf_filter_request(7, 0xFFFFFFF2, 1, 0x4B54, 0x88B5, 42, "otel_kubeskoop", 9)
    (m,) = MarshalRtnl().parse(raw)
    assert (m["header"]["type"], m["header"]["sequence_number"], m["header"]["flags"]) == (
        tc.RTM_NEWTFILTER, 9, 0x1 | 0x4 | 0x400 | 0x200)
    assert (m["index"], m["handle"], m["parent"], m["info"] >> 16) == (7, 1, 0xFFFFFFF2, 0x4B54)
    assert m["info"] & 0xFFFF == 0xB588  # the EtherType in network order
    options = m.get_attr("TCA_OPTIONS")
    assert m.get_attr("TCA_KIND") == "bpf"
    assert (options.get_attr("TCA_BPF_FD"), options.get_attr("TCA_BPF_NAME"),
            options.get_attr("TCA_BPF_FLAGS")) == (42, "otel_kubeskoop", 1)
