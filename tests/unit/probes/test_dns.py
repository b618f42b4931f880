# SPDX-License-Identifier: Apache-2.0
"""dns without a kernel: the histograms per (namespace, server, transport, rcode) become
dns.lookup.duration by error.type and slow counts; the sweep turns overdue pending queries into
timeouts (and events, rate-limited) and leaves the others; names are decoded from wire format,
escaped, capped; an answer record becomes its event; the config refuses what makes no sense."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from otel_kubeskoop.bpf.generated import datapath
from otel_kubeskoop.bpf.generated import dns as contract
from otel_kubeskoop.bpf.generated.common import EventHeader
from otel_kubeskoop.bpf.generated.dns import DnsEvent, DnsKey, DnsNameKey, DnsPending, DnsPendingKey
from otel_kubeskoop.bpf.generated.dns import DnsEventType as T
from otel_kubeskoop.bpf.generated.dns import DnsStat
from otel_kubeskoop.bpf.records import DecodeError
from otel_kubeskoop.bpf.shared import SharedObject
from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import dns
from tests.unit.probes.bpfdumps import FakeMap, flow_tuple
from tests.unit.probes.latencyfakes import hist, latency_object, samples_by_key

A_NS, B_NS = 4026532281, 4026532282
SERVER = "10.96.0.10"
PROBE = ("kubeskoop.probe", "dns")


def wire(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def name_bytes(raw: bytes) -> list[int]:
    return list(raw.ljust(dns.NAME_BYTES, b"\0")[:dns.NAME_BYTES])


def hist_key(ns: int, rcode: int, transport: int = socket.IPPROTO_UDP) -> DnsKey:
    key = DnsKey(netns=ns, netns_cookie=3, family=socket.AF_INET, transport=transport, rcode=rcode)
    key.server[:4] = socket.inet_aton(SERVER)
    return key


def pending(ns: int, ts_ns: int, txid: int, name: str = "") -> tuple[DnsPendingKey, DnsPending]:
    key = DnsPendingKey(netns=ns, client_port=40000 + txid, server_port=53, id=txid,
                        family=socket.AF_INET, transport=socket.IPPROTO_UDP)
    key.client[:4] = socket.inet_aton("10.244.1.7")
    key.server[:4] = socket.inet_aton(SERVER)
    value = DnsPending(ts_ns=ts_ns, netns_cookie=3, name_len=len(wire(name)) if name else 0)
    if name:
        value.name[:] = name_bytes(wire(name))
    return key, value


def probe_with(hists=(), pendings=(), names=(), events=False, **args) -> dns.DnsProbe:
    ctx = ProbeContext(name="dns", cycle=Cycle(namespaces={A_NS: object(), B_NS: object()}),
                       events_enabled=events)
    emitted: list = []
    ctx.emit = emitted.append
    probe = dns.DnsProbe(dns.DnsArgs.model_validate({"timeoutMs": 1000, **args}), ctx)
    probe.emitted = emitted  # type: ignore[attr-defined]
    obj = latency_object(list(hists))
    obj.maps["pending"] = FakeMap(list(pendings))
    obj.maps["names"] = FakeMap(list(names))
    obj.maps["stats"] = FakeMap({DnsStat.DNS_STAT_NONLINEAR: 4, DnsStat.DNS_STAT_PENDING_FULL: 2})
    probe.bpf.obj = obj
    return probe


def test_answers_by_error_type_and_slow_counts() -> None:
    probe = probe_with([(hist_key(A_NS, 0), hist({16: 3, 28: 1}, slow=(1, 0))),
                        (hist_key(A_NS, 3), hist({17: 2})), (hist_key(A_NS, 9), hist({18: 1})),
                        (hist_key(B_NS, 2, socket.IPPROTO_TCP), hist({20: 1}))])
    got = samples_by_key(probe.collect())
    server = ("server.address", SERVER)
    udp, tcp = ("network.transport", "udp"), ("network.transport", "tcp")
    assert sum(got[("dns.lookup.duration", A_NS, (server, udp))].counts) == 4
    assert got[("kubeskoop.dns.slow", A_NS, (server, udp))] == 1
    assert sum(got[("dns.lookup.duration", A_NS, (server, udp, ("error.type", "nxdomain")))].counts) == 2
    assert sum(got[("dns.lookup.duration", A_NS, (server, udp, ("error.type", "_OTHER")))].counts) == 1
    assert sum(got[("dns.lookup.duration", B_NS, (server, tcp, ("error.type", "servfail")))].counts) == 1
    assert got[("kubeskoop.dns.unreadable", None, ())] == 4
    assert got[("kubeskoop.agent.bpf.map.full", None, (PROBE, ("kubeskoop.bpf.map", "pending")))] == 2
    assert not [k for k in got if k[0].startswith("kubeskoop.dns.names")]  # names off


def test_the_sweep_counts_overdue_queries_once_and_keeps_the_others(monkeypatch) -> None:
    now = 10_000_000_000
    monkeypatch.setattr(dns.time, "monotonic_ns", lambda: now)
    old, fresh = pending(A_NS, now - 1_500_000_000, 1), pending(A_NS, now - 10, 2)
    stale = pending(A_NS, now - 9_000_000_000, 4)  # from before the probe started: not counted
    probe = probe_with(pendings=[old, fresh, stale], events=True, eventRate=1, eventBurst=1)
    probe.started_ns = now - 5_000_000_000
    got = samples_by_key(probe.collect())
    server = (("server.address", SERVER), ("network.transport", "udp"))
    assert got[("kubeskoop.dns.timeouts", A_NS, server)] == 1
    assert [bytes(k) for k, _ in probe.bpf.obj.maps["pending"].items()] == [bytes(fresh[0])]
    (event,) = probe.emitted
    attrs = dict(event.attributes)
    assert (event.name, event.netns) == ("kubeskoop.dns.timeout", A_NS)
    assert attrs["error.type"] == "timeout" and attrs["kubeskoop.latency"] == 1.5
    assert (attrs["source.address"], attrs["source.port"]) == ("10.244.1.7", 40001)
    assert attrs["kubeskoop.dns.id"] == 1 and "dns.question.name" not in attrs  # names off
    # A second timeout in the same namespace within the second is over the limit: counted.
    probe.bpf.obj.maps["pending"].entries.append(pending(A_NS, now - 2_000_000_000, 3))
    got = samples_by_key(probe.collect())
    assert got[("kubeskoop.dns.timeouts", A_NS, server)] == 2 and len(probe.emitted) == 1
    assert got[("kubeskoop.agent.events.lost", None, (PROBE, ("kubeskoop.loss.reason", "rate_limited")))] == 1


def test_names_are_capped_and_the_rest_is_overflow() -> None:
    def name_key(ns: int, name: str, rcode: int) -> DnsNameKey:
        key = DnsNameKey(netns=ns, netns_cookie=3, rcode=rcode)
        key.name[:] = name_bytes(wire(name))
        return key

    probe = probe_with(names=[(name_key(A_NS, "a.test", 0), 5), (name_key(A_NS, "a.test", 3), 1),
                              (name_key(A_NS, "b.test", 0), 2), (name_key(B_NS, "c.test", 2), 7)],
                       queryNames=True, maxQueryNames=2)
    got = samples_by_key(probe.collect())
    names = {(ns, dict(a)["dns.question.name"], dict(a).get("error.type")): v
             for (n, ns, a), v in got.items() if n == "kubeskoop.dns.names"}
    assert names == {(A_NS, "a.test", None): 5, (A_NS, "a.test", "nxdomain"): 1,
                     (A_NS, "b.test", None): 2}
    assert got[("kubeskoop.dns.names.overflow", None, ())] == 7
    # Names reported once stay reported; a new one keeps going to the overflow.
    assert samples_by_key(probe.collect())[("kubeskoop.dns.names.overflow", None, ())] == 7


@pytest.mark.parametrize(("raw", "length", "name"), [
    (wire("www.example.com"), 17, "www.example.com"),
    (b"\0", 1, "."),
    (wire("a.b") + b"junk", 5, "a.b"),
    (wire("averyverylongname.example"), 10, "..."),  # cut short before the first label ends
    (wire("x.y.example"), 5, "x.y..."),
    (b"\x03a.b\x01\x80\x00", 7, "a\\.b.\\128"),
    (b"\xc0\x0c", 2, "..."),  # a compression pointer: not in a question
])
def test_question_names(raw: bytes, length: int, name: str) -> None:
    assert dns.question_name(raw, length) == name


def record(kind: int, rcode: int, name: str = "") -> bytes:
    rec = DnsEvent(hdr=EventHeader(ts_ns=1000, netns=A_NS, type=kind, aux=rcode),
                   tuple=flow_tuple("10.244.1.7", SERVER, socket.IPPROTO_UDP, 40000, 53),
                   latency_ns=250_000_000, id=0x1234, name_len=len(wire(name)) if name else 0)
    if name:
        rec.name[:] = name_bytes(wire(name))
    return bytes(rec)


def test_answer_events() -> None:
    event = dns.decode_dns(record(T.DNS_EVENT_SERVFAIL, 2, "db.svc.cluster.local"), 5)
    got = dict(event.attributes)
    assert (event.name, event.upstream_type, event.netns, event.timestamp_ns) == (
        "kubeskoop.dns.servfail", "DNS_SERVFAIL", A_NS, 1005)
    assert got["error.type"] == "servfail" and got["server.address"] == SERVER
    assert got["dns.question.name"] == "db.svc.cluster.local" and got["kubeskoop.dns.id"] == 0x1234
    assert (got["source.port"], got["destination.port"], got["kubeskoop.latency"]) == (40000, 53, 0.25)
    got = dict(dns.decode_dns(record(T.DNS_EVENT_SLOW, 0)).attributes)
    assert "error.type" not in got and "dns.question.name" not in got
    with pytest.raises(ValueError, match="not the kernel's"):
        dns.decode_dns(record(T.DNS_EVENT_TIMEOUT, 0))
    with pytest.raises(DecodeError, match="unknown event type 9"):
        dns.decode_dns(record(9, 0))
    with pytest.raises(DecodeError):
        dns.decode_dns(record(T.DNS_EVENT_SLOW, 0) + bytes(8))


@pytest.mark.parametrize(("args", "error"), [
    ({"timeoutMs": 100, "slowThresholdMs": 100}, r"slowThresholdMs \(100\) must be below timeoutMs"),
    ({"timeoutMs": 5}, "timeoutMs"),
    ({"maxQueryNames": 0}, "maxQueryNames"),
    ({"maxQueryNames": contract.OBJECT.maps["names"].max_entries + 1}, "maxQueryNames"),
    ({"queryName": True}, "queryName"),
])
def test_config_errors_name_the_setting(args, error) -> None:
    with pytest.raises(ValidationError, match=error):
        dns.DnsArgs.model_validate(args)


def test_settings_and_hooks() -> None:
    args = dns.DnsArgs.model_validate({"slowThresholdMs": 50, "queryNames": True})
    assert args.settings == {"targ_slow_ns": 50_000_000, "targ_names": True}
    assert dns.DnsArgs().settings == {"targ_slow_ns": 100_000_000, "targ_names": False}
    assert contract.OBJECT.host == "datapath"
    assert set(SharedObject(datapath.OBJECT).hooks["dns"]) == {"queue", "rx"}
