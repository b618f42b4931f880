# SPDX-License-Identifier: Apache-2.0
"""dns: DNS latency and results per namespace and server, UDP and TCP, from the wire.

Two hooks of the shared object every packet passes anyway (``bpf/dns.bpf.h``): a query is a
packet a local socket sends to port 53 (``net:net_dev_queue``), its answer a packet from port 53
entering the stack in the same namespace (``net:netif_receive_skb``), matched in the kernel by
namespace, addresses, ports, transport and transaction id. The interval runs from the query
handed to the device to the answer handed to the stack: the network and the server, without
the resolver library's own time (and one exchange, where the semconv ``dns.lookup.duration`` of
a client library may span several: retries, search domains, A and AAAA).

- ``dns.lookup.duration``: answers, by ``server.address`` (as the client addressed it: a
  Service's ClusterIP), ``network.transport`` and ``error.type``: the response code lower-cased
  (``nxdomain``, ``servfail``, ``refused``; ``_OTHER`` for the rest), absent for NOERROR;
- ``kubeskoop.dns.slow``: answers slower than ``slowThresholdMs``, same attributes;
- ``kubeskoop.dns.timeouts``: queries with no answer after ``timeoutMs``, swept from the kernel's
  table of pending queries at each collection (a retransmission with the same transaction id and
  ports keeps the first start; one with a new id or port is a new query, and the old one times
  out);
- with ``queryNames``: ``kubeskoop.dns.names``, answers and timeouts per ``dns.question.name``
  (the first 64 bytes of the name), at most ``maxQueryNames`` names per collection; the rest go
  to ``kubeskoop.dns.names.overflow``.

Events: ``kubeskoop.dns.servfail``, ``kubeskoop.dns.slow`` (answers), ``kubeskoop.dns.timeout``
(the sweep's), rate-limited per namespace and type (``eventRate``/``eventBurst``; in the kernel
for answers, here for timeouts), each with the client and server, the transaction id, the latency
and, with ``queryNames``, the name. The semconv's required ``dns.question.name`` is left out of
the histogram: per name it would grow without bound (``kubeskoop.dns.names`` is the capped view).
Upstream KubeSkoop has no such probe.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from pydantic import Field, model_validator

from otel_kubeskoop.bpf.generated import dns as contract
from otel_kubeskoop.bpf.generated.common import FlowTuple
from otel_kubeskoop.bpf.generated.dns import DnsEvent, DnsEventType, DnsStat
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import EventArgs, HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._decode import (
    address,
    event_type,
    record_event,
    transport,
    tuple_attributes,
)
from otel_kubeskoop.probes._latency import Histograms, histogram, seconds
from otel_kubeskoop.probes._ratelimit import TokenBuckets
from otel_kubeskoop.probes._reconcile import NetnsReconciler
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

SERVER_ADDRESS = "server.address"
QUESTION_NAME = "dns.question.name"  # semconv
TRANSACTION_ID = "kubeskoop.dns.id"  # int: the message's transaction id

#: error.type of each response code (RFC 1035 4.1.1); NOERROR has none, the others are _OTHER
RCODE_ERRORS = {3: "nxdomain", 2: "servfail", 5: "refused"}
OTHER = "_OTHER"
TIMEOUT = "timeout"
NAME_BYTES = contract.DnsPending.name.size

_SERVER = (SERVER_ADDRESS, A.NETWORK_TRANSPORT)
DNS_DURATION = InstrumentSpec(
    "dns.lookup.duration", H, "s",
    "DNS answers: from the query a local socket sent (net:net_dev_queue) to its answer entering "
    "the stack in the same namespace (net:netif_receive_skb), by server, transport and error.type "
    "(the response code; none for NOERROR)", (*_SERVER, A.ERROR_TYPE))
DNS_SLOW = InstrumentSpec(
    "kubeskoop.dns.slow", C, "{response}",
    "DNS answers slower than slowThresholdMs, by server, transport and error.type",
    (*_SERVER, A.ERROR_TYPE), key="slow")
DNS_TIMEOUTS = InstrumentSpec(
    "kubeskoop.dns.timeouts", C, "{query}",
    "DNS queries with no answer within timeoutMs, by server and transport", _SERVER, key="timeouts")
DNS_NAMES = InstrumentSpec(
    "kubeskoop.dns.names", C, "{query}",
    "DNS answers and timeouts per query name (queryNames; at most maxQueryNames names), by "
    "error.type (the response code, or timeout; none for NOERROR)", (QUESTION_NAME, A.ERROR_TYPE),
    key="names")
DNS_NAMES_OVERFLOW = InstrumentSpec(
    "kubeskoop.dns.names.overflow", C, "{query}",
    "DNS answers and timeouts not counted per name: their name came after maxQueryNames others, "
    "or the kernel's table of names was full", key="overflow")
DNS_UNREADABLE = InstrumentSpec(
    "kubeskoop.dns.unreadable", C, "{packet}",
    "TCP segments to or from port 53 not followed: the DNS header was in the packet's page "
    "fragments, which the classic tracepoint and kprobe programs cannot read", key="NONLINEAR")
INSTRUMENTS = (DNS_DURATION, DNS_SLOW, DNS_TIMEOUTS, DNS_NAMES, DNS_NAMES_OVERFLOW, DNS_UNREADABLE)

_EVENT_ATTRIBUTES = (*A.TUPLE, SERVER_ADDRESS, A.ERROR_TYPE, A.LATENCY, TRANSACTION_ID, QUESTION_NAME)
T = DnsEventType
EVENTS_BY_TYPE = {
    T.DNS_EVENT_SERVFAIL: EventSpec(
        "kubeskoop.dns.servfail", "DNS_SERVFAIL",
        "A DNS answer with SERVFAIL: the client and server, the transaction id, the latency and "
        "(queryNames) the name", _EVENT_ATTRIBUTES),
    T.DNS_EVENT_SLOW: EventSpec(
        "kubeskoop.dns.slow", "DNS_SLOW",
        "A DNS answer slower than slowThresholdMs: the client and server, the transaction id, the "
        "response code, the latency and (queryNames) the name", _EVENT_ATTRIBUTES),
    T.DNS_EVENT_TIMEOUT: EventSpec(
        "kubeskoop.dns.timeout", "DNS_TIMEOUT",
        "A DNS query with no answer within timeoutMs: the client and server, the transaction id, "
        "the time waited and (queryNames) the name", _EVENT_ATTRIBUTES),
}
EVENTS = tuple(EVENTS_BY_TYPE.values())

_MS = 1_000_000


class DnsArgs(EventArgs):
    """``timeoutMs``: a query with no answer after this is a timeout (swept at each collection,
    so counted up to one collection interval later); ``slowThresholdMs``: answers above it are
    slow (counted, and events); ``queryNames``: keep query names (off: names are personal data
    and unbounded); ``maxQueryNames``: names reported per collection."""

    timeout_ms: float = Field(5000.0, alias="timeoutMs", ge=10, le=600_000)
    slow_threshold_ms: float = Field(100.0, alias="slowThresholdMs", gt=0, le=600_000)
    query_names: bool = Field(False, alias="queryNames")
    max_query_names: int = Field(1000, alias="maxQueryNames", ge=1,
                                 le=contract.OBJECT.maps["names"].max_entries)

    @model_validator(mode="after")
    def _slow_below_timeout(self) -> DnsArgs:
        if self.slow_threshold_ms >= self.timeout_ms:
            raise ValueError(f"slowThresholdMs ({self.slow_threshold_ms:g}) must be below "
                             f"timeoutMs ({self.timeout_ms:g}): a slower answer is a timeout")
        return self

    @property
    def settings(self) -> dict[str, int | bool]:
        return {"targ_slow_ns": int(self.slow_threshold_ms * _MS), "targ_names": self.query_names}


def rcode_error(rcode: int) -> str | None:
    """error.type of a response code: None for NOERROR."""
    return None if rcode == 0 else RCODE_ERRORS.get(rcode, OTHER)


def question_name(raw: bytes, length: int) -> str:
    """The dotted name of a question's wire-format name (its first ``length`` bytes), non-printable
    bytes, dots and backslashes escaped as semconv says (``\\DDD``, ``\\.``, ``\\\\``); a name cut
    short by the cap ends in ``...``; a compression pointer or a bad label ends it there."""
    data, labels, i = bytes(raw[:length]), [], 0
    while i < len(data):
        n = data[i]
        if n == 0:
            return ".".join(labels) if labels else "."
        if n > 63 or i + 1 + n > len(data):
            break
        labels.append("".join(_escape(b) for b in data[i + 1:i + 1 + n]))
        i += 1 + n
    return ".".join(labels) + "..."


def _escape(b: int) -> str:
    if b in (0x2E, 0x5C):
        return "\\" + chr(b)
    return chr(b) if 32 < b < 127 else f"\\{b:03d}"


def _server_attributes(family: int, server: Any, protocol: int) -> tuple[tuple[str, Any], ...]:
    return ((SERVER_ADDRESS, address(family, server)), (A.NETWORK_TRANSPORT, transport(protocol)))


def _error(error: str | None) -> tuple[tuple[str, Any], ...]:
    return ((A.ERROR_TYPE, error),) if error is not None else ()


def _event_attributes(tuple_: Any, error: str | None, latency_ns: int, txid: int, name: Any,
                      name_len: int) -> list[tuple[str, Any]]:
    """An event's attributes: the client and server (tuple_, its daddr the server), error.type,
    the latency, the transaction id and, when the kernel kept it, the query name."""
    attrs = [*tuple_attributes(tuple_), (SERVER_ADDRESS, address(tuple_.family, tuple_.daddr)),
             *_error(error), (A.LATENCY, seconds(latency_ns)), (TRANSACTION_ID, txid)]
    if name_len:
        attrs.append((QUESTION_NAME, question_name(bytes(name), name_len)))
    return attrs


def decode_dns(raw: bytes, clock_offset_ns: int = 0) -> Event:
    """One ``struct dns_event`` (an answer) as an Event."""
    rec = decode_exact(DnsEvent, raw)
    kind = event_type(DnsEventType, rec.hdr.type, "dns")
    if kind is T.DNS_EVENT_TIMEOUT:
        raise ValueError("dns: timeouts are not the kernel's to send")
    attrs = _event_attributes(rec.tuple, rcode_error(rec.hdr.aux), rec.latency_ns, rec.id, rec.name,
                              rec.name_len)
    return record_event(EVENTS_BY_TYPE[kind], rec.hdr, attrs, clock_offset_ns)


def timeout_event(key: Any, value: Any, now_ns: int, clock_offset_ns: int) -> Event:
    """The event of a pending query swept as a timeout (key and value of "pending")."""
    tuple_ = FlowTuple(family=key.family, protocol=key.transport, sport=key.client_port,
                       dport=key.server_port)
    tuple_.saddr[:], tuple_.daddr[:] = key.client, key.server
    attrs = _event_attributes(tuple_, TIMEOUT, now_ns - value.ts_ns, key.id, value.name,
                              value.name_len)
    spec = EVENTS_BY_TYPE[T.DNS_EVENT_TIMEOUT]
    return Event(spec.name, spec.upstream_type, key.netns or None, tuple(attrs), "",
                 now_ns + clock_offset_ns)


def hist_samples(key: Any, value: Any, netns: int | None) -> list[Sample]:
    attrs = (*_server_attributes(key.family, key.server, key.transport), *_error(rcode_error(key.rcode)))
    return [Sample(DNS_DURATION, histogram(value), netns, attrs),
            Sample(DNS_SLOW, value.slow[0], netns, attrs)]


class DnsProbe(HandleProbe):
    def __init__(self, args: DnsArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else DnsArgs()
        self.ctx = ctx
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.hists = Histograms(self.bpf, None)
        self.buckets = TokenBuckets(self.args.event_rate, self.args.event_burst)
        #: (netns, cookie, family, server bytes, transport) -> timeouts since start
        self.timeouts: Counter[tuple[int, int, int, bytes, int]] = Counter()
        #: (netns, cookie, name, error.type) -> timeouts per name since start
        self.name_timeouts: Counter[tuple[int, int, str, str]] = Counter()
        self.reported_names: set[tuple[int, str]] = set()  # (netns, name) reported so far
        self.started_ns = 0  # pending queries older than this are from before: not ours
        self._timeouts_netns: NetnsReconciler[Any] = NetnsReconciler(lambda k: (k[0], k[1]))
        self._name_timeouts_netns: NetnsReconciler[Any] = NetnsReconciler(lambda k: (k[0], k[1]))
        self._names_netns: NetnsReconciler[Any] = NetnsReconciler(
            lambda e: (e[0].netns, e[0].netns_cookie))

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()
        self.bpf.start(self.args.settings, events=self.args)

    def decode(self, raw: bytes) -> Event:
        return decode_dns(raw, self.bpf.clock_offset)

    def sweep(self, now_ns: int) -> None:
        """Count the queries pending longer than ``timeoutMs`` as timeouts and delete them (a
        delete that fails lost the race to the answer, which the kernel counted). Queries from
        before this probe started (it was stopped while the object stayed loaded: their answers
        may have come while its bit was off) are deleted uncounted."""
        pending = self.bpf.map("pending")
        deadline = now_ns - int(self.args.timeout_ms * _MS)
        for key, value in pending.items():
            if value.ts_ns < self.started_ns:
                pending.delete(key)
                continue
            if value.ts_ns > deadline or not pending.delete(key):
                continue
            self.timeouts[(key.netns, value.netns_cookie, key.family, bytes(key.server),
                           key.transport)] += 1
            if self.args.query_names:
                name = question_name(bytes(value.name), value.name_len)
                self.name_timeouts[(key.netns, value.netns_cookie, name, TIMEOUT)] += 1
            if self.ctx.events_enabled and self.buckets.allow(key.netns, T.DNS_EVENT_TIMEOUT,
                                                              time.monotonic()):
                self.ctx.emit(timeout_event(key, value, now_ns, self.bpf.clock_offset))

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None:
            return []
        self.sweep(time.monotonic_ns())
        if self.ctx.cycle.namespaces:
            self.buckets.forget(set(self.ctx.cycle.namespaces))
        out: list[Sample] = []
        for key, value, netns in self.hists.live():
            out += hist_samples(key, value, netns)
        verdict = self._timeouts_netns.reconcile(list(self.timeouts), self.ctx.cycle.namespaces)
        for gone in verdict.gone:
            del self.timeouts[gone]
        for key, netns in verdict.live:
            out.append(Sample(DNS_TIMEOUTS, self.timeouts[key], netns, _server_attributes(*key[2:])))
        if self.args.query_names:
            out += self.name_samples()
        stats = dict(self.bpf.map("stats").items())
        out.append(Sample(DNS_UNREADABLE, stats.get(DnsStat.DNS_STAT_NONLINEAR, 0), None))
        return out + self.self_samples(stats)

    def name_samples(self) -> list[Sample]:
        """Answers and timeouts per name, the first ``maxQueryNames`` (netns, name) pairs seen
        staying reported (until their namespace goes); the rest counted in the overflow."""
        namespaces = self.ctx.cycle.namespaces
        names = self.bpf.map("names")
        counts: Counter[tuple[int, int, str, str | None]] = Counter()
        kernel = self._names_netns.reconcile(names.items(), namespaces)
        for key, _ in kernel.gone:
            names.delete(key)
        for (key, value), _ in kernel.live:
            name = question_name(bytes(key.name), NAME_BYTES)
            counts[(key.netns, key.netns_cookie, name, rcode_error(key.rcode))] += value
        timeouts = self._name_timeouts_netns.reconcile(list(self.name_timeouts), namespaces)
        for gone in timeouts.gone:
            del self.name_timeouts[gone]
        for key, _ in timeouts.live:
            counts[key] += self.name_timeouts[key]
        live = {key.netns for (key, _), _ in kernel.live} | {key[0] for key, _ in timeouts.live}
        self.reported_names = {(inode, name) for inode, name in self.reported_names if inode in live}
        out, overflow = [], 0
        for (inode, cookie, name, error), value in sorted(counts.items(), key=lambda kv: kv[0][:3]):
            if (inode, name) not in self.reported_names:
                if len(self.reported_names) >= self.args.max_query_names:
                    overflow += value
                    continue
                self.reported_names.add((inode, name))
            out.append(Sample(DNS_NAMES, value, inode or None, ((QUESTION_NAME, name), *_error(error))))
        out.append(Sample(DNS_NAMES_OVERFLOW, overflow, None))
        return out

    def self_samples(self, stats: dict[int, int]) -> list[Sample]:
        """The tables' fill (hists, pending, names) and the events lost, the kernel's and this
        sweep's rate limit together."""
        probe = (A.PROBE, self.ctx.name)
        out = [self.bpf.full_sample("hists_full", "hists")]
        for stat, table in ((DnsStat.DNS_STAT_PENDING_FULL, "pending"),
                            (DnsStat.DNS_STAT_NAMES_FULL, "names")):
            out.append(Sample(I.AGENT_BPF_MAP_FULL, stats.get(stat, 0), None,
                              (probe, (A.BPF_MAP, table))))
        if self.ctx.events_enabled:
            losses = self.bpf.losses()
            losses["rate_limited"] = losses.get("rate_limited", 0) + self.buckets.refused
            out += [Sample(I.AGENT_EVENTS_LOST, n, None, (probe, (A.LOSS_REASON, reason)))
                    for reason, n in losses.items()]
        return out


SPEC = ProbeSpec(
    name="dns",
    summary="DNS latency and results per namespace and server, UDP and TCP: answers by response "
            "code, slow answers, timeouts; query names behind an option",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="per packet sent by a local socket, two socket loads (a UDP one: a probe read "
                  "of its headers); per packet received, one probe read of the IP header and "
                  "ports; per DNS query a hash insert, per answer a lookup, a delete and a "
                  "histogram update; per collection a read of the pending queries and the "
                  "histograms",
    default_enabled=False,
    factory=DnsProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=DnsArgs,
    requires=bpf_requires("tracepoints net:net_dev_queue and net:netif_receive_skb; else "
                          "fentry or kprobes on __dev_queue_xmit and ip_rcv"),
)
