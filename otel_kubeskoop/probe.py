# SPDX-License-Identifier: Apache-2.0
"""What a probe is: its declared SPEC (data), the protocol it implements, and what it returns.

A probe reads the kernel and returns plain :class:`Sample` values keyed by network-namespace inode.
It never imports OpenTelemetry and never knows pods: the framework (``runtime``, ``telemetry``)
creates instruments, attributes namespaces to resources (``identity``), isolates failures and
reports its own health.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict

from otel_kubeskoop.procfs import FileSource, ParseError
from otel_kubeskoop.procfs.net_snmp import read_net_snmp
from otel_kubeskoop.topology.netns import NetnsGone
from otel_kubeskoop.topology.podprocs import Hierarchy, PodProcesses, scan_pod_processes

if TYPE_CHECKING:
    from otel_kubeskoop.topology.netns import Netns
    from otel_kubeskoop.vocabulary.events import EventSpec
    from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

Snmp: TypeAlias = dict[str, dict[str, int]]  # net/snmp: section -> counter -> value


class Kind(enum.Enum):
    METRICS = "metrics"
    EVENTS = "events"


class Source(enum.Enum):
    PROCFS = "procfs"
    NETLINK = "netlink"
    BPF = "bpf"


class Scope(enum.Enum):
    NODE = "node"  # one value for the whole node (softnet, ipvs)
    NETNS = "netns"  # one value per network namespace, attributed to its pod
    POD = "pod"  # one value per pod, from its processes (hostNetwork pods included)
    FLOW = "flow"  # per connection or flow


class Overhead(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Unavailable(Exception):
    """The probe cannot run on this machine; the message says why (kernel feature, file, capability)."""


class NoArgs(BaseModel):
    """Args model for probes that take none: any key given is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """Everything known about a probe without starting it (listed by ``otel-kubeskoop probes``)."""

    name: str  # the upstream config name; equals the module stem
    summary: str
    kinds: frozenset[Kind]
    source: Source
    scope: Scope
    overhead: Overhead
    overhead_note: str  # what the cost scales with
    default_enabled: bool
    factory: type  # the probe class: factory(args, ctx) -> Probe
    instruments: tuple[InstrumentSpec, ...] = ()
    events: tuple[EventSpec, ...] = ()
    args: type[BaseModel] = NoArgs
    requires: tuple[str, ...] = ()  # human-readable requirements (files, kernel features)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A distribution as the kernel keeps it: counts per bucket, cumulative since it began counting.

    ``bounds`` are the upper bounds of all but the last bucket (OTLP explicit bounds), in the
    instrument's unit; ``counts`` has one more entry than ``bounds``. ``sum`` is None when the
    kernel does not keep it.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float | None = None


def log2_bounds(unit: float, slots: int) -> tuple[float, ...]:
    """Bounds for a kernel log2 histogram whose slot ``i`` holds values in [2^i, 2^(i+1)) units
    (slot 0 also holds 0): ``unit * 2^(i+1)`` for every slot but the last, which is open-ended.
    OTLP buckets are upper-inclusive, so a value of exactly 2^(i+1) units, counted in slot i+1
    by the kernel, sits on the bound of bucket i: a boundary effect of one unit."""
    return tuple(unit * (1 << (i + 1)) for i in range(slots - 1))


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation: an instrument, its value, the namespace it belongs to and its attributes.

    ``netns`` is the namespace inode, or ``None`` for node-scope values (softnet, self-telemetry).
    ``attributes`` is a tuple of (key, value) pairs so samples are hashable and cheap to build.
    ``pod_uid`` is set (and ``netns`` left ``None``) by pod-scope probes (``fd``, ``io``), whose
    values belong to a pod by its cgroup, not by a namespace: a hostNetwork pod shares the node's
    namespace but has processes of its own. The framework routes such a sample to that pod's
    resource and compat labels.
    """

    instrument: InstrumentSpec
    value: int | float | Histogram
    netns: int | None = None
    attributes: tuple[tuple[str, str | int], ...] = ()
    pod_uid: str | None = None


@dataclass(slots=True, eq=False)
class Cycle:
    """One collection cycle as the probes see it: the namespaces scanned, the host's, and the
    reads the probes share, each made once in this cycle by whichever probe asks first.

    The agent makes a new one each cycle (never changes one) and the runtime hands it to every
    probe's context.
    """

    # inode -> namespace handle (a procfs FileSource over /proc/<pid>/ of that namespace).
    namespaces: Mapping[int, Netns] = field(default_factory=dict)
    host: Netns | None = None
    # Who a peer address is: ip -> (kind, namespace, name) (topology/remotes.py); None: unknown.
    remote: Callable[[str], tuple[str, str, str]] | None = None
    # Shared reads, filled on first use (results and failures alike).
    _snmp: dict[int, Snmp | Exception] = field(default_factory=dict, init=False, repr=False)
    _pod_processes: dict[tuple[Hierarchy, ...], PodProcesses] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, namespaces: Mapping[int, Netns],
           remote: Callable[[str], tuple[str, str, str]] | None = None) -> Cycle:
        """The cycle over one namespace scan (the host is the namespace marked ``is_host``)."""
        return cls(namespaces, next((ns for ns in namespaces.values() if ns.is_host), None), remote)

    def snmp(self, ns: FileSource) -> Snmp:
        """``net/snmp`` of one namespace, read once per cycle for ``tcp``, ``udp`` and ``ip``.

        A failure is kept too, so three probes over one malformed file report it once each
        without reading it three times.
        """
        key = getattr(ns, "inode", id(ns))
        hit = self._snmp.get(key)
        if hit is None:
            try:
                hit = read_net_snmp(ns)
            except (OSError, ParseError, NetnsGone) as exc:
                hit = exc
            self._snmp[key] = hit
        if isinstance(hit, Exception):
            raise hit
        return hit

    def pod_processes(self, hierarchies: Sequence[Hierarchy]) -> tuple[PodProcesses, bool]:
        """Pod UID -> processes over ``hierarchies``, scanned once per cycle for ``fd`` and ``io``;
        and whether this call made the scan (the caller that did reports its errors)."""
        key = tuple(hierarchies)
        scan = self._pod_processes.get(key)
        if scan is not None:
            return scan, False
        scan = self._pod_processes[key] = scan_pod_processes(list(hierarchies))
        return scan, True


@dataclass(slots=True)
class ProbeContext:
    """What the framework hands one probe instance."""

    name: str
    proc_root: str = "/proc"
    cycle: Cycle = field(default_factory=Cycle)
    # Where the host's cgroup filesystem and sysfs are mounted (pod processes; RDMA counters).
    cgroup_root: str = "/sys/fs/cgroup"
    sys_root: str = "/sys"
    # Failures that did not stop the whole collection (one namespace's file was malformed);
    # the runtime counts and clears them after each collect.
    errors: list[BaseException] = field(default_factory=list)
    # Events: whether the config asks this probe for events (``event.probes``), where decoded
    # events go, and how a probe hands its ring buffer's fd to the runtime's event pump (one
    # epoll thread for every probe: ``consume`` drains the buffer and calls ``emit`` per record).
    events_enabled: bool = False
    emit: Callable[[Event], None] = field(default=lambda event: None)
    # Many events at once (one ring-buffer read's); None: ``emit`` each.
    emit_batch: Callable[[Sequence[Event]], None] | None = None
    watch: Callable[[int, Callable[[], None]], None] = field(default=lambda fd, consume: None)
    # Records the probe could not decode (counted as events lost, reason decode_error).
    decode_errors: int = 0
    # The shared BPF objects of the runtime (otel_kubeskoop.bpf.shared.SharedObjects), so that
    # its probes share one; None: the probe makes its own.
    objects: Any = None

    def report(self, exc: BaseException) -> None:
        self.errors.append(exc)


@dataclass(frozen=True, slots=True)
class Event:
    """One anomaly, emitted as an OTel log record with ``event_name`` and the pod's resource.

    ``name`` is ``kubeskoop.<probe>.<type>``; ``upstream_type`` the KubeSkoop event type string
    (``TCPRESET_NOSOCK``...), carried as an attribute so upstream users know what they see.
    """

    name: str
    upstream_type: str
    netns: int | None
    attributes: tuple[tuple[str, str | int | float | bool], ...] = ()
    body: str = ""
    timestamp_ns: int = 0


class Probe(Protocol):
    """The protocol every probe class implements. ``__init__(args, ctx)`` does no I/O."""

    def start(self) -> None:
        """Acquire resources, or raise :class:`Unavailable` with the reason."""

    def collect(self) -> Iterable[Sample]:
        """Read the source, return samples. Exceptions are isolated and counted by the runtime."""

    def stop(self) -> None:
        """Release resources. Idempotent."""

    # Optional, for BPF probes: ``bpf_programs() -> Mapping[str, int]``, the loaded programs'
    # names and fds, for per-program run statistics (config ``bpfStats``).
