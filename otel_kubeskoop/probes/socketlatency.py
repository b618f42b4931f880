# SPDX-License-Identifier: Apache-2.0
"""socketlatency: how long TCP data waits in a socket, per namespace, reading and writing.

The two intervals, each between two kernel points (``bpf/socketlatency.bpf.h``):

- ``receive`` (upstream "read"): from ``sock:sk_data_ready`` (data was queued on a socket that had
  nothing unread; the kernel wakes the reader) to ``sock:sock_recv_length`` with a positive
  length (the application's ``recvmsg()``/``read()`` returned data; ``MSG_PEEK`` reads do not
  count). The time a reader leaves data waiting: a slow, blocked or overloaded application.
- ``transmit`` (upstream "write"/"send"): from ``tcp:tcp_sendmsg_locked`` (the application's
  ``sendmsg()``/``write()`` on a socket with nothing unsent) to ``net:net_dev_queue`` of the
  socket's next segment of new data (sequence number ``snd_nxt``: TCP handed it to the device).
  The time written data waits in the write queue: congestion or peer window, Nagle, cork,
  pacing, TCP small queues, or a blocked ``sendmsg()`` waiting for send-buffer space.

When data is still waiting after an end point (unread bytes, or unsent bytes), the next wait
starts at that moment, so each measurement is one stretch during which the socket held waiting
data. Upstream measures the same intervals with kprobes (``sock_def_readable`` ->
``tcp_cleanup_rbuf``, ``tcp_sendmsg_locked`` -> ``tcp_write_xmit``); those kprobes are this
probe's last-resort candidates, and ``tcp_cleanup_rbuf`` also sees ``splice``/``tcp_read_sock``
readers, which the ``sock_recv_length`` tracepoint (``sock_recvmsg()`` only) does not.

Metrics: ``kubeskoop.socketlatency.duration``, a log2 histogram in the kernel per (namespace,
direction), exported as an OTel histogram in seconds (buckets 2^(i+1) ns,
``network.io.direction``); and upstream's counters ``read1ms``, ``read100ms``, ``write1ms``,
``write100ms`` (waits over 1 ms and 100 ms, counted in the kernel; compat names
``kubeskoop_socketlatency_*`` with the standard labels).

Events (``event.probes``): ``kubeskoop.socketlatency.readslow`` / ``.sendslow`` (upstream
``SOCKETLAT_READSLOW`` / ``SOCKETLAT_SENDSLOW``) for each wait over ``thresholdMs`` (default 100
ms, upstream's), rate-limited per namespace and direction in the kernel, with the connection
(source = the local end), its TCP state, the wait, the two attach points that bound it, and the
process that read (receive) or whose write started the wait (transmit).

Sockets being timed live in a bounded in-flight table (one slot per socket and direction,
``bpf/include/latency.bpf.h``); a socket reaching ``TCP_CLOSE`` has its entries removed
(``sock:inet_sock_set_state``), anything else left is evicted by a socket that needs its slot,
and counted (``kubeskoop.agent.bpf.inflight.evicted``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from otel_kubeskoop.bpf.generated import socketlatency as contract
from otel_kubeskoop.bpf.generated.socketlatency import SocketlatencyDirection, SocketlatencyEvent
from otel_kubeskoop.bpf.records import decode_exact
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source
from otel_kubeskoop.probes._bpf import HandleProbe, ObjectHandle, bpf_requires
from otel_kubeskoop.probes._decode import (
    KernelNames,
    connection_attributes,
    event_type,
    kernel_names,
    record_event,
)
from otel_kubeskoop.probes._latency import Directions, Endpoints, Histograms, LatencyArgs, seconds
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, H, InstrumentSpec

# A log2 histogram per (namespace, direction); the upstream counters count intervals above the
# kernel's fixed thresholds, per namespace.
_DIR = (A.NETWORK_IO_DIRECTION,)
SOCKETLATENCY_DURATION = InstrumentSpec(
    "kubeskoop.socketlatency.duration", H, "s",
    "Time TCP data waited in a socket: receive, from arriving on a socket with nothing unread "
    "(sock:sk_data_ready) to the application's read (sock:sock_recv_length); transmit, from the "
    "application's write on a socket with nothing unsent (tcp:tcp_sendmsg_locked) to its next "
    "segment of new data reaching the device (net:net_dev_queue)", _DIR)
SOCKETLATENCY_COUNTERS = tuple(
    InstrumentSpec(f"kubeskoop.socketlatency.{word}", C, unit, desc, key=key,
                   compat=f"kubeskoop_socketlatency_{word}")
    for word, key, unit, desc in [
        ("read1ms", "read.0", "{read}", "Reads whose data had waited more than 1 ms in the receive queue (includes read100ms)"),
        ("read100ms", "read.1", "{read}", "Reads whose data had waited more than 100 ms in the receive queue"),
        ("write1ms", "write.0", "{write}", "Writes whose data waited more than 1 ms before leaving the socket (includes write100ms)"),
        ("write100ms", "write.1", "{write}", "Writes whose data waited more than 100 ms before leaving the socket"),
    ]
)
INSTRUMENTS = (SOCKETLATENCY_DURATION,) + SOCKETLATENCY_COUNTERS

_EVENT_ATTRIBUTES = (*A.TUPLE, A.NETWORK_CONNECTION_STATE, A.NETWORK_IO_DIRECTION, A.LATENCY,
              A.LATENCY_START, A.LATENCY_END, A.PROCESS_PID, A.PROCESS_COMMAND)
SOCKETLATENCY_READSLOW = EventSpec(
    "kubeskoop.socketlatency.readslow", "SOCKETLAT_READSLOW",
    "Data waited in a TCP socket's receive queue longer than the threshold before the "
    "application read it: the connection, the wait, and the reading process", _EVENT_ATTRIBUTES)
SOCKETLATENCY_SENDSLOW = EventSpec(
    "kubeskoop.socketlatency.sendslow", "SOCKETLAT_SENDSLOW",
    "Data the application wrote waited in a TCP socket longer than the threshold before leaving "
    "for the device: the connection, the wait, and the writing process", _EVENT_ATTRIBUTES)
EVENTS = (SOCKETLATENCY_READSLOW, SOCKETLATENCY_SENDSLOW)

INFLIGHT_MAP = "socks"

READ, WRITE = SocketlatencyDirection.SOCKETLATENCY_READ, SocketlatencyDirection.SOCKETLATENCY_WRITE
#: network.io.direction of each direction
DIRECTIONS = {READ: "receive", WRITE: "transmit"}
#: the hooks whose attach points start and end each direction's interval
BOUNDS = {READ: ("ready", "recv"), WRITE: ("sendmsg", "queue")}
_EVENTS = {READ: SOCKETLATENCY_READSLOW, WRITE: SOCKETLATENCY_SENDSLOW}
BY_DIRECTION = Directions(
    SocketlatencyDirection, DIRECTIONS, SOCKETLATENCY_DURATION,
    {READ: SOCKETLATENCY_COUNTERS[:2], WRITE: SOCKETLATENCY_COUNTERS[2:]})


class SocketlatencyArgs(LatencyArgs):
    """``thresholdMs``: events for waits longer than this (upstream: 100 ms)."""

    threshold_ms: float = Field(100.0, alias="thresholdMs", gt=0, le=3_600_000)


def endpoints(chosen: Mapping[str, Any]) -> Endpoints:
    """direction -> (start, end) attach points in use, from ``BPFObject.chosen``."""
    return {d: (str(chosen.get(a, a)), str(chosen.get(b, b))) for d, (a, b) in BOUNDS.items()}


def decode_socketlatency(raw: bytes, names: KernelNames, points: Endpoints,
                         clock_offset_ns: int = 0) -> Event:
    """One ``struct socketlatency_event`` as an Event. Pure: kernel names and the attach points
    in use are passed in."""
    rec = decode_exact(SocketlatencyEvent, raw)
    direction = event_type(SocketlatencyDirection, rec.hdr.type, "socketlatency")
    attrs = connection_attributes(rec.tuple, names, rec.hdr.aux)
    start, end = points.get(direction, ("", ""))
    attrs += [
        (A.NETWORK_IO_DIRECTION, DIRECTIONS[direction]),
        (A.LATENCY, seconds(rec.latency_ns)),
        (A.LATENCY_START, start),
        (A.LATENCY_END, end),
    ]
    if rec.pid:
        attrs.append((A.PROCESS_PID, rec.pid))
    if rec.comm:
        attrs.append((A.PROCESS_COMMAND, rec.comm.decode(errors="replace")))
    return record_event(_EVENTS[direction], rec.hdr, attrs, clock_offset_ns)


class SocketlatencyProbe(HandleProbe):
    def __init__(self, args: SocketlatencyArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else SocketlatencyArgs()
        self.names = KernelNames()
        self.bpf = ObjectHandle(contract.OBJECT, ctx, self.decode)
        self.hists = Histograms(self.bpf, INFLIGHT_MAP)
        #: direction -> (start, end) attach points in use (set once attached)
        self.points: Endpoints = {}

    def _attached(self, chosen: Mapping[str, Any]) -> None:
        self.points = endpoints(chosen)

    def start(self) -> None:
        self.names = kernel_names()
        self.bpf.start(self.args.settings, events=self.args, attached=self._attached)

    def collect(self) -> list[Sample]:
        return self.hists.collect(BY_DIRECTION.samples)

    def decode(self, raw: bytes) -> Event:
        return decode_socketlatency(raw, self.names, self.points, self.bpf.clock_offset)


SPEC = ProbeSpec(
    name="socketlatency",
    summary="How long TCP data waits in sockets: received data until the application reads it, "
            "written data until it leaves for the device (histograms per namespace)",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.HIGH,
    overhead_note="per TCP data arrival, read and write a start slot looked up (written when a "
                  "wait starts, a histogram updated when it ends), and a lookup per transmitted "
                  "packet of any socket (net_dev_queue), all inline loads and stores; one table "
                  "read per collection, two series per namespace",
    default_enabled=False,
    factory=SocketlatencyProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=SocketlatencyArgs,
    requires=bpf_requires("tracepoints sock:sk_data_ready (6.6+), sock:sock_recv_length (6.3+), "
                          "tcp:tcp_sendmsg_locked (6.11+, BTF), net:net_dev_queue, "
                          "sock:inet_sock_set_state; else fentry or kprobes on sock_def_readable, "
                          "tcp_cleanup_rbuf, tcp_sendmsg_locked, __dev_queue_xmit, tcp_set_state"),
)
