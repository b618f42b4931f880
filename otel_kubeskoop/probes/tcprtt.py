# SPDX-License-Identifier: Apache-2.0
"""tcprtt: TCP round-trip times through connections' lives, per namespace.

The kernel's own RTT estimate of each TCP socket (RFC 6298), read while the connection runs, not
only when it closes: on ``tcp:tcp_probe`` (``tcp_rcv_established()``: an established socket
received a segment, data or ACK, so senders and receivers are both seen), at most once per socket
per ``sampleIntervalMs`` (``bpf/tcprtt.bpf.h``), so the cost does not grow with the packet rate
and every connection counts about once per interval whatever its throughput. Each sample adds,
as ``tcp_info`` reports them (``ss -ti``'s ``rtt:<srtt>/<rttvar>`` and ``rto:``):

- ``kubeskoop.tcprtt.srtt``: the smoothed RTT (``srtt_us >> 3``);
- ``kubeskoop.tcprtt.rttvar``: its mean deviation (``mdev_us >> 2``): the jitter;
- ``kubeskoop.tcprtt.rto``: the retransmission timeout (``icsk_rto``, backoff included), in
  jiffies converted with the kernel's ``CONFIG_HZ`` (libbpf reads it from ``/proc/config.gz`` or
  ``/boot/config-<release>``; without either, this histogram stays empty).

Each is a log2 histogram in the kernel per namespace (buckets of 2^i ns), exported in seconds;
percentiles come from the buckets. The smoothed RTT is also kept per peer,
``kubeskoop.tcprtt.remote.srtt`` by ``kubeskoop.remote.kind``/``namespace``/``name``: a pod of this
node, a Service (by ClusterIP), the node, loopback or external (:mod:`otel_kubeskoop.topology.remotes`),
at most ``maxRemotes`` per namespace, the rest folded into ``overflow``
(:mod:`otel_kubeskoop.probes._remotes`); the per-namespace histograms are kept apart and stay
whole whatever the per-peer map holds. Sockets with no RTT sample yet (no ACK of data received) are
not counted. Upstream KubeSkoop has no such probe, so no compat name. The OpenTelemetry semantic
conventions have no TCP RTT metric yet (the proposal open-telemetry/semantic-conventions#3682
names one sampled at close only).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from otel_kubeskoop.bpf.generated import tcprtt as contract
from otel_kubeskoop.bpf.generated.common import LatencyHist
from otel_kubeskoop.bpf.generated.tcprtt import TcprttQuantity
from otel_kubeskoop.probe import Histogram, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._latency import BOUNDS, Histograms, histogram, seconds
from otel_kubeskoop.probes._remotes import DEFAULT_MAX_REMOTES, RemoteTotals, remote_attributes
from otel_kubeskoop.topology.remotes import Remote
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import H, InstrumentSpec

_SAMPLED = ("sampled at most once per connection per sampleIntervalMs while it receives "
            "(tcp:tcp_probe)")
TCPRTT_SRTT = InstrumentSpec(
    "kubeskoop.tcprtt.srtt", H, "s",
    f"Smoothed round-trip time of TCP connections (srtt, as tcp_info's tcpi_rtt), {_SAMPLED}",
    key="srtt")
TCPRTT_RTTVAR = InstrumentSpec(
    "kubeskoop.tcprtt.rttvar", H, "s",
    f"Mean deviation of TCP connections' round-trip time (as tcp_info's tcpi_rttvar), {_SAMPLED}",
    key="rttvar")
TCPRTT_RTO = InstrumentSpec(
    "kubeskoop.tcprtt.rto", H, "s",
    f"Retransmission timeout of TCP connections, backoff included (as tcp_info's tcpi_rto), "
    f"{_SAMPLED}", key="rto")
TCPRTT_REMOTE_SRTT = InstrumentSpec(
    "kubeskoop.tcprtt.remote.srtt", H, "s",
    f"Smoothed round-trip time of TCP connections by peer (a pod of this node, a Service, the "
    f"node, loopback, external, or overflow past maxRemotes), {_SAMPLED}", A.REMOTE, key="srtt")
INSTRUMENTS = (TCPRTT_SRTT, TCPRTT_RTTVAR, TCPRTT_RTO, TCPRTT_REMOTE_SRTT)

#: the instrument of each quantity the kernel keeps a histogram of
BY_QUANTITY = {
    TcprttQuantity.TCPRTT_SRTT: TCPRTT_SRTT,
    TcprttQuantity.TCPRTT_RTTVAR: TCPRTT_RTTVAR,
    TcprttQuantity.TCPRTT_RTO: TCPRTT_RTO,
}

_NS_PER_MS = 1_000_000


class TcprttArgs(BaseModel):
    """``sampleIntervalMs``: at most one sample per connection per this interval;
    ``maxRemotes``: peers per namespace with a histogram of their own (0: none kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    sample_interval_ms: float = Field(1000.0, alias="sampleIntervalMs", ge=1, le=3_600_000)
    max_remotes: int = Field(DEFAULT_MAX_REMOTES, alias="maxRemotes", ge=0, le=1024)

    @property
    def settings(self) -> dict[str, int | bool]:
        return {"targ_interval_ns": int(self.sample_interval_ms * _NS_PER_MS),
                "targ_remotes": self.max_remotes > 0}


def samples(key: Any, value: Any, netns: int | None) -> list[Sample]:
    """The histogram of one ``hists`` entry, as its quantity's instrument."""
    instrument = BY_QUANTITY.get(key.quantity)
    return [Sample(instrument, histogram(value), netns)] if instrument is not None else []


def _flatten(h: LatencyHist) -> list[int]:
    return [*h.slots, h.sum_ns]


def remote_samples(by_netns: dict[int | None, dict[Remote, list[int]]]) -> list[Sample]:
    """The per-peer smoothed RTT histograms, from :meth:`RemoteTotals.read`."""
    return [Sample(TCPRTT_REMOTE_SRTT, Histogram(BOUNDS, tuple(counts[:-1]), seconds(counts[-1])), netns,
                   remote_attributes(remote))
            for netns, remotes in by_netns.items() for remote, counts in remotes.items()]


class TcprttProbe(HandleProbe):
    def __init__(self, args: TcprttArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else TcprttArgs()
        self.bpf = ObjectHandle(contract.OBJECT, ctx)
        self.hists = Histograms(self.bpf, None)
        self.remotes = RemoteTotals(self.bpf, _flatten, self.args.max_remotes)

    def start(self) -> None:
        self.bpf.start(self.args.settings)

    def collect(self) -> list[Sample]:
        out = self.hists.collect(samples)
        if self.bpf.obj is not None and self.args.max_remotes:
            out += remote_samples(self.remotes.read()) + self.remotes.self_samples()
        return out


SPEC = ProbeSpec(
    name="tcprtt",
    summary="TCP round-trip time, its variation and the retransmission timeout through "
            "connections' lives (histograms per namespace, and the RTT per peer: pod, Service, "
            "external; sampled per connection)",
    kinds=frozenset({Kind.METRICS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.MEDIUM,
    overhead_note="per TCP segment received by an established socket, one inline slot lookup "
                  "and a clock read; once per connection per sampleIntervalMs, three socket "
                  "reads, three histogram updates and one hash lookup (per-peer RTT); one table "
                  "read and one map drain per collection, three series per namespace plus one "
                  "per peer (at most maxRemotes + 1)",
    default_enabled=False,
    factory=TcprttProbe,
    instruments=INSTRUMENTS,
    args=TcprttArgs,
    requires=bpf_requires("tracepoint tcp:tcp_probe (classic record with the socket: Linux "
                          "6.10+); else fentry or kprobe on tcp_rcv_established"),
)
