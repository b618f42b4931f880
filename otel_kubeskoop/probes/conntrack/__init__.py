# SPDX-License-Identifier: Apache-2.0
"""conntrack: connection-tracking counters per namespace, (opt-in) entries per pod and SNAT port
use from the tables themselves, and (opt-in) conntrack events.

Metrics come from ctnetlink statistics read inside each namespace: the per-CPU counters
(``IPCTNL_MSG_CT_GET_STATS_CPU``, summed over CPUs) and the entry count
(``IPCTNL_MSG_CT_GET_STATS``). The kernel keeps both per network namespace (``net->ct.stat``,
``nf_conntrack_count(net)``), so every pod gets its own values (upstream reads the host's only).
The table limit ``nf_conntrack_max`` is one node-wide setting (a child namespace's sysctl is
read-only and shows the initial namespace's value), so ``kubeskoop.conntrack.maxentries`` goes to
the node, once. A namespace where no rule uses conntrack tracks nothing: its counters stay 0.

Tables (``dumpTables: true``, off by default): after the counters, the tables that hold entries
are dumped, within ``maxEntries`` entries in total, and counted per pod by original source
address and state, and per translated source and destination for SNAT port use
(otel_kubeskoop/probes/conntrack/table.py says how).

Events (``event.probes: [{name: conntrack}]``): one netlink socket per namespace subscribed to
``NFNLGRP_CONNTRACK_NEW``/``UPDATE``/``DESTROY`` (narrowed by ``eventTypes``). Subscribing is what
turns event reporting on in a namespace (``net.netfilter.nf_conntrack_events`` = 2, the default,
reports only while someone listens). The sockets sit in one epoll set of this probe, whose fd the
runtime's event pump watches: one thread reads every namespace. Each message is classified from
its header, passed through a token bucket per (namespace, type) (``eventRate`` per second,
``eventBurst``), and only then decoded. Every event the kernel sent is delivered or counted in
``kubeskoop.agent.events.lost``: ``rate_limited`` and ``socket_buffer_full`` (messages the kernel
dropped because the socket's receive buffer was full: the socket's drop counter, ``SO_MEMINFO``)
per namespace, on that namespace's resource (the pod whose events were lost); ``decode_error`` and
the event path's own reasons (``export_queue_full``, ``export_failed``) on the node.
Namespaces are followed every collection: sockets for new ones are opened, those of vanished ones
closed. Upstream's event probe scans namespaces once and crashes on its first event (its map is
never initialised).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import threading
import time
from collections import Counter
from typing import Literal

from pydantic import Field, field_validator

from otel_kubeskoop.netlink.conntrack import EVENT_GROUPS, ConntrackEvent, event_type, parse_event, read_stats
from otel_kubeskoop.netlink.core import NETLINK_NETFILTER, DecodeError, Message
from otel_kubeskoop.netlink.sockets import RECV_BUFFER, NetnsSockets
from otel_kubeskoop.probe import Event, Kind, Overhead, ProbeContext, ProbeSpec, Sample, Scope, Source, Unavailable
from otel_kubeskoop.probes._bpf import EventArgs
from otel_kubeskoop.probes._decode import network_type, transport
from otel_kubeskoop.probes._netlink import NetlinkSequence, report_failures, request_here
from otel_kubeskoop.probes._ratelimit import TokenBuckets
from otel_kubeskoop.probes.conntrack import table
from otel_kubeskoop.probes.conntrack.table import CONNTRACK_STATE
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, G, U, InstrumentSpec

CONNTRACK_REPLIED = "kubeskoop.conntrack.replied"  # bool: traffic seen in both directions
CONNTRACK_ID = "kubeskoop.conntrack.id"  # int: the same for every event of one entry

# conntrack: ctnetlink statistics per namespace (per-CPU counters summed); maxentries is the
# node-wide nf_conntrack_max and goes to the node.
COUNTERS = tuple(
    InstrumentSpec(f"kubeskoop.conntrack.{word}", kind, unit, desc, key=key,
                   compat=f"kubeskoop_conntrack_{word}" if compat else None)
    for word, key, kind, unit, desc, compat in [
        ("found", "found", C, "{packet}", "Conntrack lookups that found an existing entry", True),
        ("invalid", "invalid", C, "{packet}", "Packets conntrack could not track (invalid)", True),
        ("ignore", "ignore", C, "{packet}", "Packets already attached to an entry or untracked (not looked up)", True),
        ("insert", "insert", C, "{entry}", "Entries inserted into the conntrack table", True),
        ("insertfailed", "insert_failed", C, "{packet}",
         "Packets whose new entry could not be inserted (a clash, e.g. a NAT port race); the packet is dropped", True),
        ("drop", "drop", C, "{packet}", "Packets dropped because conntrack failed (no memory, helper refused)", True),
        ("earlydrop", "early_drop", C, "{entry}", "Entries evicted early to make room when the table was full", True),
        ("error", "error", C, "{packet}", "Packets conntrack could not track because of an error (ICMP errors)", True),
        ("searchrestart", "search_restart", C, "{lookup}", "Table lookups restarted because the table was resized", True),
        ("clashresolve", "clash_resolve", C, "{entry}", "Insert clashes conntrack resolved without dropping the packet", False),
        ("chaintoolong", "chain_toolong", C, "{entry}", "Entries refused because their hash chain was too long", False),
        ("entries", "entries", U, "{entry}", "Entries in the namespace's conntrack table now", True),
        ("maxentries", "max_entries", G, "{entry}", "Size limit of the conntrack table (nf_conntrack_max, node-wide)", True),
    ]
)
CONNTRACK_MAXENTRIES = next(spec for spec in COUNTERS if spec.key == "max_entries")
INSTRUMENTS = COUNTERS + table.INSTRUMENTS

# conntrack: ctnetlink multicast events per namespace.
_EVENT_ATTRIBUTES = (*A.TUPLE, CONNTRACK_STATE, CONNTRACK_REPLIED, CONNTRACK_ID)
CONNTRACK_NEW = EventSpec(
    "kubeskoop.conntrack.new", "ConntrackNew", "Conntrack created an entry for a new connection", _EVENT_ATTRIBUTES)
CONNTRACK_UPDATE = EventSpec(
    "kubeskoop.conntrack.update", "ConntrackUpdate",
    "A conntrack entry changed: its TCP state, status bits (replied, assured) or NAT", _EVENT_ATTRIBUTES)
CONNTRACK_DESTROY = EventSpec(
    "kubeskoop.conntrack.destroy", "ConntrackDestroy",
    "A conntrack entry was removed (timed out, closed, flushed or evicted)", _EVENT_ATTRIBUTES)
EVENTS = (CONNTRACK_NEW, CONNTRACK_UPDATE, CONNTRACK_DESTROY)


log = logging.getLogger(__name__)

EventType = Literal["new", "update", "destroy"]
SPECS = {"new": CONNTRACK_NEW, "update": CONNTRACK_UPDATE, "destroy": CONNTRACK_DESTROY}

SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5  # drop silently when full (still counted in sk_drops) instead of failing recv
SO_RCVBUFFORCE = 33
SO_MEMINFO = 55  # u32[SK_MEMINFO_VARS]; index SK_MEMINFO_DROPS is the socket's drop counter
SK_MEMINFO_DROPS = 8
_MEMINFO = struct.Struct("=9I")
_HEADER = struct.Struct("=IHH")  # nlmsg_len, nlmsg_type, nlmsg_flags
#: Receive buffer of each event socket: room for about 10,000 events between two pump wake-ups.
EVENT_SOCKET_BUFFER = 4 << 20
#: Datagrams read from one socket per pump call, so one busy namespace cannot starve the others.
MAX_BATCH = 1024
LOSS_RATE_LIMITED = "rate_limited"
LOSS_SOCKET_BUFFER_FULL = "socket_buffer_full"


class ConntrackArgs(EventArgs):
    """``eventRate``/``eventBurst`` as every event probe has them, plus which event types to read;
    for metrics, whether and how far to dump the tables (otel_kubeskoop/probes/conntrack/table.py)."""

    event_types: tuple[EventType, ...] = Field(("new", "update", "destroy"), alias="eventTypes", min_length=1)
    dump_tables: bool = Field(False, alias="dumpTables")
    max_entries: int = Field(100_000, alias="maxEntries", ge=1, le=10_000_000)
    snat_port_range: str = Field("1024-65535", alias="snatPortRange")
    max_snat_series: int = Field(100, alias="maxSnatSeries", ge=0, le=100_000)

    @field_validator("snat_port_range")
    @classmethod
    def _port_range(cls, value: str) -> str:
        table.port_range(value)
        return value


def socket_drops(sock: socket.socket) -> int:
    """Messages the kernel dropped for ``sock`` because its receive buffer was full."""
    return _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size))[SK_MEMINFO_DROPS]


def event_of(ev: ConntrackEvent, netns: int, timestamp_ns: int) -> Event:
    """The OTel-bound event of one decoded ctnetlink event."""
    spec = SPECS[ev.type]
    attrs: list[tuple[str, str | int | bool]] = []
    kind = network_type(ev.family)
    if kind is not None:
        attrs.append((A.NETWORK_TYPE, kind))
    proto = transport(ev.protocol)
    attrs.append((A.NETWORK_TRANSPORT, proto))
    attrs.append((A.SOURCE_ADDRESS, ev.src))
    if ev.sport is not None:
        attrs.append((A.SOURCE_PORT, ev.sport))
    attrs.append((A.DESTINATION_ADDRESS, ev.dst))
    if ev.dport is not None:
        attrs.append((A.DESTINATION_PORT, ev.dport))
    if ev.state is not None:
        attrs.append((CONNTRACK_STATE, ev.state))
    attrs.append((CONNTRACK_REPLIED, ev.replied))
    if ev.id is not None:
        attrs.append((CONNTRACK_ID, ev.id))
    src = f"{ev.src}:{ev.sport}" if ev.sport is not None else ev.src
    dst = f"{ev.dst}:{ev.dport}" if ev.dport is not None else ev.dst
    # Upstream's message text, for people reading the JSON lines.
    body = (f"Proto = {proto.upper()} Replied = {str(ev.replied).lower()} "
            f"State = {(ev.state or 'unknown').upper()} Src = {src}, Dst = {dst}")
    return Event(spec.name, spec.upstream_type, netns, tuple(attrs), body, timestamp_ns)


class ConntrackProbe(NetlinkSequence):
    def __init__(self, args: ConntrackArgs | None, ctx: ProbeContext) -> None:
        self.args = args if args is not None else ConntrackArgs()
        self.ctx = ctx
        self.stats = NetnsSockets(NETLINK_NETFILTER)
        self.tables = (table.TableDump(self.args.max_entries, table.port_range(self.args.snat_port_range),
                                       self.args.max_snat_series) if self.args.dump_tables else None)
        # Event state: touched by the agent thread (collect) and the event pump (consume).
        self._lock = threading.Lock()
        self._events: NetnsSockets | None = None
        self._epoll: select.epoll | None = None
        self._fd_inode: dict[int, int] = {}
        self.buckets = TokenBuckets(self.args.event_rate, self.args.event_burst)
        self._types = frozenset(self.args.event_types)
        self._groups = sum(1 << (EVENT_GROUPS[t] - 1) for t in self._types)
        self._recv = bytearray(RECV_BUFFER)
        self.rate_limited: Counter[int] = Counter()  # namespace inode -> events over the limit

    # Lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            request_here(NETLINK_NETFILTER, lambda sock: read_stats(sock, self._next_seq()))
        except (OSError, DecodeError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT):
                raise Unavailable("ctnetlink is not available: the kernel needs nf_conntrack and "
                                  "nf_conntrack_netlink (CONFIG_NF_CT_NETLINK; modprobe nf_conntrack_netlink)") from None
            raise Unavailable(f"ctnetlink statistics request failed: {exc}") from None
        if self.ctx.events_enabled:
            self._epoll = select.epoll()
            self._events = NetnsSockets(NETLINK_NETFILTER, setup=self._setup_events, on_close=self._closed)
            with self._lock:
                self._sync_events()
            self.ctx.watch(self._epoll.fileno(), self._consume)

    def stop(self) -> None:
        self.stats.close()
        with self._lock:
            if self._events is not None:
                self._events.close()
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None

    # Metrics ------------------------------------------------------------------------------------

    def collect(self) -> list[Sample]:
        namespaces = self.ctx.cycle.namespaces
        socks = self.stats.sync(namespaces)
        report_failures(self.ctx, self.stats.failures)
        out: list[Sample] = []
        max_entries: int | None = None
        counts: dict[int, int] = {}
        for inode, sock in socks.items():
            try:
                st = read_stats(sock, self._next_seq())
            except (OSError, DecodeError) as exc:
                self.stats.discard(inode)
                self.ctx.report(exc)
                continue
            counts[inode] = st.entries or 0
            for spec in COUNTERS:
                value = getattr(st, spec.key)
                if spec.key == "max_entries":
                    if value is not None and (max_entries is None or namespaces[inode].is_host):
                        max_entries = value
                elif value is not None:
                    out.append(Sample(spec, value, inode))
        if max_entries is not None:
            out.append(Sample(CONNTRACK_MAXENTRIES, max_entries, None))
        if self.tables is not None:
            out += self.tables.collect(self.ctx, self.stats, counts, self._next_seq)
        if self._events is not None:
            out += self._losses()
        return out

    def _losses(self) -> list[Sample]:
        """Events lost per namespace, on that namespace's resource: the pod whose events they were."""
        limited = (A.PROBE, self.ctx.name), (A.LOSS_REASON, LOSS_RATE_LIMITED)
        full = (A.PROBE, self.ctx.name), (A.LOSS_REASON, LOSS_SOCKET_BUFFER_FULL)
        out = []
        with self._lock:
            self._sync_events()
            assert self._events is not None
            for inode, sock in self._events.items():
                try:
                    drops = socket_drops(sock)
                except OSError as exc:
                    self.ctx.report(exc)
                    continue
                out.append(Sample(I.AGENT_EVENTS_LOST, self.rate_limited[inode], inode, limited))
                out.append(Sample(I.AGENT_EVENTS_LOST, drops, inode, full))
        return out

    # Events -------------------------------------------------------------------------------------

    def _setup_events(self, sock: socket.socket) -> None:
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_SOCKET_BUFFER)
        except PermissionError:  # without CAP_NET_ADMIN: up to net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_SOCKET_BUFFER)
        sock.bind((0, self._groups))
        sock.setblocking(False)

    def _closed(self, inode: int, sock: socket.socket) -> None:
        """A namespace's event socket is closing (lock held): forget it and its counters (the
        namespace's resource goes out once more with its last values, then is released)."""
        fd = sock.fileno()
        self._fd_inode.pop(fd, None)
        if self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
        self.rate_limited.pop(inode, None)
        self.buckets.drop(inode)

    def _sync_events(self) -> None:
        """Event sockets for exactly the scanned namespaces (lock held)."""
        assert self._events is not None and self._epoll is not None
        socks = self._events.sync(self.ctx.cycle.namespaces)
        report_failures(self.ctx, self._events.failures)
        for inode, sock in socks.items():
            fd = sock.fileno()
            if fd not in self._fd_inode:
                self._fd_inode[fd] = inode
                self._epoll.register(fd, select.EPOLLIN)

    def _consume(self) -> None:
        """Called by the event pump when a socket is readable: read, limit, decode, emit."""
        pending: list[Event] = []
        with self._lock:
            if self._epoll is None or self._events is None:
                return
            for fd, _ in self._epoll.poll(0):
                inode = self._fd_inode.get(fd)
                sock = self._events.get(inode) if inode is not None else None
                if sock is not None:
                    self._drain(inode, sock, pending)  # type: ignore[arg-type]
        for event in pending:
            self.ctx.emit(event)

    def _drain(self, inode: int, sock: socket.socket, pending: list[Event]) -> None:
        """Read up to :data:`MAX_BATCH` datagrams of one namespace (lock held). The header alone
        decides the type and the rate limit; only events within the limit are copied and decoded."""
        buf = self._recv
        view = memoryview(buf)
        now = time.monotonic()  # one clock reading per batch: a batch takes milliseconds
        allow, types = self.buckets.allow, self._types
        unpack = _HEADER.unpack_from
        for _ in range(MAX_BATCH):
            try:
                n = sock.recv_into(buf, RECV_BUFFER, socket.MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # overrun; the dropped messages are in sk_drops
                    continue
                log.debug("conntrack events of namespace %d: %s", inode, exc)
                return
            if n > RECV_BUFFER:
                self.ctx.decode_errors += 1
                continue
            off = 0
            while off < n:  # one message per datagram, as ctnetlink sends them; more are handled
                if n - off < 16:
                    self.ctx.decode_errors += 1
                    break
                length, mtype, flags = unpack(buf, off)
                if length < 16 or length > n - off:
                    self.ctx.decode_errors += 1
                    break
                kind = event_type(mtype, flags)
                if kind is not None and kind in types:
                    if not allow(inode, kind, now):
                        self.rate_limited[inode] += 1
                    else:
                        data = bytes(view[off:off + length])
                        try:
                            ev = parse_event(data, Message(mtype, flags, 0, 16, length))
                        except DecodeError:
                            self.ctx.decode_errors += 1
                        else:
                            pending.append(event_of(ev, inode, time.time_ns()))
                off += (length + 3) & ~3


SPEC = ProbeSpec(
    name="conntrack",
    summary="Conntrack counters and entries per network namespace (the table limit: node-wide); with "
            "dumpTables, entries per pod by original source and state, and SNAT port use per destination; "
            "conntrack new/update/destroy events",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.NETLINK,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="metrics: two ctnetlink requests per namespace per collection (one message per "
                  "CPU); events: one netlink message per conntrack event in every namespace, its "
                  "header read for each, decoded only within eventRate; one socket per namespace "
                  "for metrics and one for events. dumpTables (off by default) adds a dump of every "
                  "table holding entries, up to maxEntries (default 100,000) per collection: 7 to 9 us "
                  "of CPU per entry (0.7 to 0.9 s at 100,000, about 0.3 s of it the kernel's), plus "
                  "each namespace's addresses (about 90 us a namespace)",
    default_enabled=False,
    factory=ConntrackProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=ConntrackArgs,
    requires=("nf_conntrack and ctnetlink (CONFIG_NF_CT_NETLINK)",
              "CAP_SYS_ADMIN to enter pod namespaces (setns), CAP_NET_ADMIN for event subscriptions"),
)
