# SPDX-License-Identifier: Apache-2.0
"""tcpconnect: TCP connection attempts, why they fail, and how long the handshake takes, per
namespace.

From the TCP state changes (``sock:inet_sock_set_state``) and packet drops (``skb:kfree_skb``),
hooks of the shared object (``bpf/tcpconnect.bpf.h``):

- an attempt is a socket entering ``SYN_SENT`` (``connect()`` sent the SYN):
  ``kubeskoop.tcpconnect.attempts``;
- ``SYN_SENT`` -> ``ESTABLISHED``: the connect latency, SYN sent to SYN-ACK received,
  ``kubeskoop.tcpconnect.duration`` (a log2 histogram in the kernel, seconds over OTLP);
- ``SYN_SENT`` -> ``CLOSE``: a failure, ``kubeskoop.tcpconnect.failures`` by ``error.type``, from
  the error the kernel set on the socket as it closed it: ``refused`` (``ECONNREFUSED``: a RST
  answered the SYN, or an ICMP port unreachable), ``timed_out`` (``ETIMEDOUT``: the SYN
  retransmissions, ``net.ipv4.tcp_syn_retries``, went unanswered), ``unreachable`` (another
  error, left by an ICMP error: ``EHOSTUNREACH``, ``ENETUNREACH``...), ``aborted`` (none: the
  application closed the socket before an answer, a connect timeout of its own), and
  ``dropped`` instead of any but ``refused`` when this node dropped a SYN of the socket while it
  still owned it (its own namespace's netfilter, routing, qdisc...: ``skb:kfree_skb`` with
  ``skb->sk`` the socket), linked with that drop's reason;
- ``reset``: a connection past its handshake closed by a RST it received (``ECONNRESET``, or
  ``EPIPE`` in ``CLOSE_WAIT``); a local abort (``SO_LINGER`` 0) is not one.

The same attempts, failures and connect latency per peer, ``kubeskoop.tcpconnect.remote.*`` by
``kubeskoop.remote.kind``/``namespace``/``name``: a pod of this node, a Service (by ClusterIP: the
socket keeps the address it connected to, before kube-proxy's DNAT), the node, loopback or
external (:mod:`otel_kubeskoop.topology.remotes`), at most ``maxRemotes`` per namespace, the rest
folded into ``overflow`` (:mod:`otel_kubeskoop.probes._remotes`). The per-namespace counts are
kept apart and stay whole whatever the per-peer map holds.

Events (``event.probes``): ``kubeskoop.tcpconnect.<error.type>`` for each failure, rate-limited
per namespace and type in the kernel, with the connection (source = the local end), the state it
left, the errno, the time since the SYN, the SYNs retransmitted, and for ``dropped`` the drop
reason and how many SYNs this node dropped. The OpenTelemetry proposal
open-telemetry/semantic-conventions#3682 names the same causes with ``error.type``; the metric
names are this project's until it lands. Upstream KubeSkoop has no such probe.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

from pydantic import Field

from otel_kubeskoop.bpf.generated import tcpconnect as contract
from otel_kubeskoop.bpf.generated.tcpconnect import (
    TcpconnectDrop,
    TcpconnectEvent,
    TcpconnectOutcome,
    TcpconnectRemote,
)
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Histogram, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import Counters, EventArgs, HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._decode import (
    KernelNames,
    connection_attributes,
    event_type,
    kernel_names,
    record_event,
)
from otel_kubeskoop.probes._latency import BOUNDS, Histograms, histogram, seconds
from otel_kubeskoop.probes._remotes import DEFAULT_MAX_REMOTES, RemoteTotals, remote_attributes
from otel_kubeskoop.probes.packetloss import DROP_REASON
from otel_kubeskoop.topology.remotes import Remote
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

ERRNO = "kubeskoop.tcpconnect.errno"  # the socket's error as it closed: ECONNREFUSED
SYN_DROPS = "kubeskoop.tcpconnect.syn_drops"  # int: SYNs of the socket this node dropped
SYN_RETRANSMITS = "kubeskoop.tcpconnect.syn_retransmits"  # int: SYNs sent again

O = TcpconnectOutcome
#: error.type of each failure outcome
ERROR_TYPES = {
    O.TCPCONNECT_REFUSED: "refused",
    O.TCPCONNECT_TIMEOUT: "timed_out",
    O.TCPCONNECT_DROPPED: "dropped",
    O.TCPCONNECT_UNREACHABLE: "unreachable",
    O.TCPCONNECT_ABORTED: "aborted",
    O.TCPCONNECT_RESET: "reset",
}

TCPCONNECT_ATTEMPTS = InstrumentSpec(
    "kubeskoop.tcpconnect.attempts", C, "{connection}",
    "TCP connection attempts: sockets that sent a SYN (CLOSE -> SYN_SENT)", key="ATTEMPT")
TCPCONNECT_FAILURES = InstrumentSpec(
    "kubeskoop.tcpconnect.failures", C, "{connection}",
    "TCP connections that failed, by cause (error.type): attempts refused, timed_out, dropped "
    "(a SYN dropped on this node), unreachable (ICMP error) or aborted (closed by the "
    "application before an answer); reset: established connections closed by a RST received",
    (A.ERROR_TYPE,), key="failures")
TCPCONNECT_DURATION = InstrumentSpec(
    "kubeskoop.tcpconnect.duration", H, "s",
    "TCP connect latency: from the SYN sent (CLOSE -> SYN_SENT) to ESTABLISHED "
    "(sock:inet_sock_set_state)")
_BY_PEER = " by peer (a pod of this node, a Service, the node, loopback, external, or overflow past maxRemotes)"
TCPCONNECT_REMOTE_ATTEMPTS = InstrumentSpec(
    "kubeskoop.tcpconnect.remote.attempts", C, "{connection}",
    f"TCP connection attempts{_BY_PEER}", A.REMOTE, key="ATTEMPT")
TCPCONNECT_REMOTE_FAILURES = InstrumentSpec(
    "kubeskoop.tcpconnect.remote.failures", C, "{connection}",
    f"TCP connections that failed, by cause (error.type, as kubeskoop.tcpconnect.failures){_BY_PEER}",
    (A.ERROR_TYPE, *A.REMOTE), key="failures")
TCPCONNECT_REMOTE_DURATION = InstrumentSpec(
    "kubeskoop.tcpconnect.remote.duration", H, "s", f"TCP connect latency{_BY_PEER}", A.REMOTE)
INSTRUMENTS = (TCPCONNECT_ATTEMPTS, TCPCONNECT_FAILURES, TCPCONNECT_DURATION,
               TCPCONNECT_REMOTE_ATTEMPTS, TCPCONNECT_REMOTE_FAILURES, TCPCONNECT_REMOTE_DURATION)

_EVENT_ATTRIBUTES = (*A.TUPLE, A.NETWORK_CONNECTION_STATE, A.ERROR_TYPE, ERRNO, A.LATENCY,
                     SYN_RETRANSMITS, SYN_DROPS, DROP_REASON)
_WHAT = {
    "refused": "A TCP connect was refused: a RST (or ICMP port unreachable) answered its SYN",
    "timed_out": "A TCP connect timed out: its SYN retransmissions went unanswered",
    "dropped": "A TCP connect failed after this node dropped its SYN: the drop reason",
    "unreachable": "A TCP connect failed on an ICMP error (host or network unreachable...)",
    "aborted": "A TCP connect was closed by the application before an answer came",
    "reset": "An established TCP connection was closed by a RST it received",
}
EVENTS_BY_OUTCOME = {
    outcome: EventSpec(f"kubeskoop.tcpconnect.{word}", f"TCPCONNECT_{word.upper()}",
                       f"{_WHAT[word]}: the connection, the state it left, the errno, the time "
                       "since the SYN and the SYNs retransmitted", _EVENT_ATTRIBUTES)
    for outcome, word in ERROR_TYPES.items()
}
EVENTS = tuple(EVENTS_BY_OUTCOME.values())


def decode_tcpconnect(raw: bytes, names: KernelNames, clock_offset_ns: int = 0) -> Event:
    """One ``struct tcpconnect_event`` as an Event. Pure: kernel names are passed in."""
    rec = decode_exact(TcpconnectEvent, raw)
    outcome = event_type(TcpconnectOutcome, rec.hdr.type, "tcpconnect")
    if outcome not in EVENTS_BY_OUTCOME:
        raise ValueError(f"tcpconnect: outcome {outcome.name} is not a failure")
    attrs: list[tuple[str, Any]] = connection_attributes(rec.tuple, names, rec.hdr.aux)
    attrs.append((A.ERROR_TYPE, ERROR_TYPES[outcome]))
    if rec.error:
        attrs.append((ERRNO, errno.errorcode.get(rec.error, str(rec.error))))
    if outcome is not O.TCPCONNECT_RESET:
        attrs += [(A.LATENCY, seconds(rec.duration_ns)), (SYN_RETRANSMITS, rec.syns)]
    if rec.drops:
        attrs.append((SYN_DROPS, rec.drops))
    if rec.drop_reason != TcpconnectDrop.TCPCONNECT_NO_DROP:
        attrs.append((DROP_REASON, names.drop_reason(rec.drop_reason)))
    return record_event(EVENTS_BY_OUTCOME[outcome], rec.hdr, attrs, clock_offset_ns)


def count_samples(counts: dict[int | None, dict[tuple[Any, ...], int]]) -> list[Sample]:
    """Attempts and failures by error.type, from ``{netns: {(outcome,): count}}``."""
    out: list[Sample] = []
    for netns, by_outcome in counts.items():
        for (outcome,), value in by_outcome.items():
            if outcome == O.TCPCONNECT_ATTEMPT:
                out.append(Sample(TCPCONNECT_ATTEMPTS, value, netns))
            elif outcome in ERROR_TYPES:
                out.append(Sample(TCPCONNECT_FAILURES, value, netns,
                                  ((A.ERROR_TYPE, ERROR_TYPES[O(outcome)]),)))
    return out


def duration_samples(key: Any, value: Any, netns: int | None) -> list[Sample]:
    return [Sample(TCPCONNECT_DURATION, histogram(value), netns)]


_OUTCOMES = TcpconnectRemote.outcomes.size // ctypes.sizeof(ctypes.c_uint64)


def _flatten(r: TcpconnectRemote) -> list[int]:
    return [*r.outcomes, *r.duration.slots, r.duration.sum_ns]


def remote_samples(by_netns: dict[int | None, dict[Remote, list[int]]]) -> list[Sample]:
    """Attempts, failures by error.type and the connect latency per peer, from
    :meth:`RemoteTotals.read` (counts of the outcomes, then the latency histogram)."""
    out: list[Sample] = []
    for netns, remotes in by_netns.items():
        for remote, counts in remotes.items():
            attrs = remote_attributes(remote)
            out.append(Sample(TCPCONNECT_REMOTE_ATTEMPTS, counts[O.TCPCONNECT_ATTEMPT], netns, attrs))
            out += [Sample(TCPCONNECT_REMOTE_FAILURES, counts[outcome], netns,
                           ((A.ERROR_TYPE, word), *attrs))
                    for outcome, word in ERROR_TYPES.items() if counts[outcome]]
            hist = counts[_OUTCOMES:]
            out.append(Sample(TCPCONNECT_REMOTE_DURATION,
                              Histogram(BOUNDS, tuple(hist[:-1]), seconds(hist[-1])), netns, attrs))
    return out


class TcpconnectArgs(EventArgs):
    """The event settings, and ``maxRemotes``: peers per namespace counted apart (0: none)."""

    max_remotes: int = Field(DEFAULT_MAX_REMOTES, alias="maxRemotes", ge=0, le=1024)


class TcpconnectProbe(HandleProbe):
    def __init__(self, args: TcpconnectArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else TcpconnectArgs()
        self.names = KernelNames()
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.counters = Counters(self.bpf)
        self.hists = Histograms(self.bpf, "socks")
        self.remotes = RemoteTotals(self.bpf, _flatten, self.args.max_remotes)

    def start(self) -> None:
        self.names = kernel_names()
        self.bpf.start({**self.names.not_drop_settings(), "targ_remotes": self.args.max_remotes > 0},
                       events=self.args)

    def collect(self) -> list[Sample]:
        if self.bpf.obj is None:
            return []
        out = count_samples(self.counters.read())
        out.append(self.bpf.full_sample("counters_full", "counters"))
        if self.args.max_remotes:
            out += remote_samples(self.remotes.read()) + self.remotes.self_samples()
        return out + self.hists.collect(duration_samples)

    def decode(self, raw: bytes) -> Event:
        return decode_tcpconnect(raw, self.names, self.bpf.clock_offset)


SPEC = ProbeSpec(
    name="tcpconnect",
    summary="TCP connection attempts, failures by cause (refused, timed out, dropped here with "
            "the drop reason, unreachable, aborted, reset) and connect latency, per namespace and "
            "per peer (pod, Service, external)",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="per TCP state change to SYN_SENT, ESTABLISHED or CLOSE, an inline slot "
                  "lookup, a counter update and a per-peer hash lookup (a socket read on close); "
                  "per dropped packet with a socket, one slot lookup; with events, one record per "
                  "failure up to eventRate per namespace; one map read and one map drain per "
                  "collection",
    default_enabled=False,
    factory=TcpconnectProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=TcpconnectArgs,
    requires=bpf_requires("tracepoints sock:inet_sock_set_state and skb:kfree_skb; else "
                          "fentry or kprobes on tcp_set_state and kfree_skb_reason"),
)
