# SPDX-License-Identifier: Apache-2.0
"""Run the configured probes: start, collect with failure isolation, stop; and report their health.

An exception in one probe's ``start`` or ``collect`` never reaches another probe: it is logged
(once per distinct message), counted by ``error.type``, and shown in ``/status``. A failure for
want of a privilege (``EPERM``, ``EACCES``: a capability the agent was not given) makes the probe
``failed`` with that reason; it is logged once, then at most once a minute with the count. The runtime's own
samples (per-probe duration, errors, state) go to the node resource like any other node-scope data.
"""

from __future__ import annotations

import enum
import errno
import logging
import select
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_kubeskoop import capabilities
from otel_kubeskoop.bpf.shared import SharedObjects
from otel_kubeskoop.bpf.stats import ProgramStats
from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Event, Kind, Probe, ProbeContext, ProbeSpec, Sample, Unavailable
from otel_kubeskoop.probes import REGISTRY
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    UNAVAILABLE = "unavailable"  # cannot run on this machine (Unavailable); not an agent fault
    FAILED = "failed"  # start raised something unexpected
    STOPPED = "stopped"


def error_type(exc: BaseException) -> str:
    """A low-cardinality ``error.type`` value: the exception's class name."""
    return type(exc).__name__


#: Seconds between two log lines about one probe's privilege failures.
DENIED_LOG_EVERY = 60.0
_DENIED = (errno.EPERM, errno.EACCES)


def _unmet(spec: ProbeSpec) -> str:
    """``; needs ...``: the capabilities ``spec`` needs that this process lacks, if that is known."""
    try:
        unmet = capabilities.missing([spec], capabilities.held()).get(spec.name, [])
    except (OSError, ValueError):  # no /proc/self/status to read
        unmet = []
    return "; needs " + "; ".join(str(need) for need in unmet) if unmet else ""


def denied(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is the kernel refusing for want of a privilege."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _DENIED:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@dataclass
class ProbeRun:
    """One configured probe and what the runtime knows about it."""

    name: str
    kind: Kind
    spec: ProbeSpec
    probe: Probe | None = None
    ctx: ProbeContext | None = None
    state: State = State.STOPPED
    reason: str = ""  # why unavailable or failed
    last_error: str = ""
    errors: Counter[str] = field(default_factory=Counter)
    last_duration: float | None = None
    collections: int = 0
    denied: str = ""  # the first failure for want of a privilege
    denials: int = 0  # failures for want of a privilege, in all
    denials_logged: tuple[float, int] = (0.0, 0)  # when the last line about them went out, and the count then

    @property
    def reported_state(self) -> State:
        """``failed`` once the probe was refused for want of a privilege, else its state."""
        return State.FAILED if self.denied and self.state is State.RUNNING else self.state

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value,
                               "state": self.reported_state.value}
        if self.denied:
            out["reason"] = f"lacks a privilege ({self.denials} operations refused): {self.denied}"
            out["denials"] = self.denials
        elif self.reason:
            out["reason"] = self.reason
        if self.last_error:
            out["last_error"] = self.last_error
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.last_duration is not None:
            out["last_duration_seconds"] = round(self.last_duration, 6)
        return out


@dataclass
class ProbeChanges:
    """What :meth:`ProbeRuntime.apply` did, by probe name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> why it did not start

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restarted)


class EventPump:
    """One thread for every probe's events: epoll over the fds probes hand in (a libbpf ring
    buffer's epoll fd), calling each one's ``consume`` when it is readable."""

    def __init__(self, timeout: float = 0.2) -> None:
        self._timeout = timeout
        self._epoll: select.epoll | None = None
        self._consumers: dict[int, tuple[str, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Held around each consume(): unwatch() takes it, so a probe's buffer is never read while
        # (or after) the probe closes it.
        self._dispatch = threading.Lock()
        self.errors: Counter[str] = Counter()  # probe -> consume() failures

    def watch(self, probe: str, fd: int, consume: Callable[[], None]) -> None:
        if self._epoll is None:
            self._epoll = select.epoll()
        self._consumers[fd] = (probe, consume)
        self._epoll.register(fd, select.EPOLLIN)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kubeskoop-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        epoll = self._epoll
        while not self._stop.is_set() and epoll is not None:
            for fd, _ in epoll.poll(self._timeout):
                with self._dispatch:
                    probe, consume = self._consumers.get(fd, ("", None))
                    if consume is None:
                        continue
                    try:
                        consume()
                    except Exception as exc:  # isolation: one probe's bad record never stops the pump
                        if not self.errors[probe]:
                            log.error("events of probe %s: %s: %s", probe, error_type(exc), exc)
                        self.errors[probe] += 1

    def unwatch(self, probe: str) -> None:
        """Stop polling ``probe``'s fds; returns once no consume() of it is running."""
        with self._dispatch:
            for fd in [fd for fd, (name, _) in self._consumers.items() if name == probe]:
                del self._consumers[fd]
                if self._epoll is not None:
                    self._epoll.unregister(fd)
            self.errors.pop(probe, None)

    def stop(self) -> None:
        """Stop polling (before the probes close their buffers). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._consumers.clear()


class ProbeRuntime:
    """Owns probe instances. Metrics-kind probes are collected each cycle; a probe configured for
    both kinds is one instance (no shared singletons as upstream has)."""

    def __init__(self, probes: Iterable[ProbeConfig], proc_root: str = "/proc",
                 registry: Mapping[str, ProbeSpec] = REGISTRY,
                 emit: Callable[[Event], None] | None = None, bpf_stats: bool = False,
                 cgroup_root: str = "/sys/fs/cgroup", sys_root: str = "/sys",
                 emit_batch: Callable[[Sequence[Event]], None] | None = None) -> None:
        """``emit`` receives every decoded event (the event emitter's ``emit``; ``emit_batch``, its
        ``emit_batch``, many at once); ``bpf_stats`` turns on the kernel's per-program statistics
        for as long as the runtime runs."""
        self.cycle = Cycle()  # the one handed in last
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.sys_root = sys_root
        self.pump = EventPump()
        self.program_stats: ProgramStats | None = None
        if bpf_stats:
            self.program_stats = ProgramStats()
            if not self.program_stats.enable():
                log.warning("bpfStats: %s", self.program_stats.reason)
                self.program_stats = None
        self.objects = SharedObjects(stats=self.program_stats is not None)
        self._emit = emit or (lambda event: None)
        self._emit_batch = emit_batch
        self._registry = registry
        self.runs: list[ProbeRun] = []
        self._first: dict[str, ProbeRun] = {}  # a probe configured for both kinds runs once
        for pc in probes:
            if pc.name not in registry:  # config.load rejects it first; this guards direct callers
                raise ValueError(f"unknown probe {pc.name!r} (known: {', '.join(sorted(registry))})")
            self.runs.append(ProbeRun(pc.name, pc.kind, registry[pc.name]))
        probes = list(probes)
        self._args = {pc.name: pc.args for pc in probes}
        self._with_events = {pc.name for pc in probes if pc.kind is Kind.EVENTS}
        self._with_metrics = {pc.name for pc in probes if pc.kind is Kind.METRICS}

    def start(self, cycle: Cycle) -> None:
        """Start every probe, with ``cycle`` (the first namespace scan) in its context."""
        self.cycle = cycle
        self._start(self.runs)

    def _start(self, runs: Iterable[ProbeRun]) -> None:
        for run in runs:
            first = self._first.setdefault(run.name, run)
            if first is not run:
                run.probe, run.ctx, run.state, run.reason = first.probe, first.ctx, first.state, first.reason
                continue
            ctx = self._context(run.name)
            run.ctx = ctx
            run.state = State.STARTING
            try:
                probe = run.spec.factory(self._args.get(run.name), ctx)
                probe.start()
            except Unavailable as exc:
                run.state, run.reason = State.UNAVAILABLE, str(exc)
                log.warning("probe %s unavailable: %s", run.name, exc)
                continue
            except Exception as exc:  # isolation: a broken probe must not stop the agent
                run.state, run.reason = State.FAILED, f"{error_type(exc)}: {exc}"
                run.errors[error_type(exc)] += 1
                if denied(exc):
                    run.denied, run.denials = run.reason + _unmet(run.spec), 1
                log.error("probe %s failed to start: %s", run.name, run.reason, exc_info=log.isEnabledFor(logging.DEBUG))
                continue
            run.probe = probe
            run.state = State.RUNNING
            log.info("probe %s (%s) running", run.name, run.kind.value)

    # Changes while running (a config reload) ---------------------------------------------------

    def apply(self, probes: Iterable[ProbeConfig]) -> ProbeChanges:
        """Make the running probes those of ``probes``: start the new ones, stop the removed
        ones, restart those whose arguments (or whether they give events, fixed at start)
        changed. The others keep running untouched, so their counters and kernel maps go on.

        A probe that fails to start is reported failed (with its error) like at start; the rest
        of the change applies.
        """
        wanted = list(probes)
        args = {pc.name: pc.args for pc in wanted}
        events = {pc.name for pc in wanted if pc.kind is Kind.EVENTS}
        metrics = {pc.name for pc in wanted if pc.kind is Kind.METRICS}
        changes = ProbeChanges(
            added=sorted(set(args) - set(self._args)),
            removed=sorted(set(self._args) - set(args)),
            restarted=sorted(n for n in set(args) & set(self._args)
                             if args[n] != self._args[n] or (n in events) != (n in self._with_events)))
        for name in changes.removed + changes.restarted:
            self.remove(name)
        self._args, self._with_events, self._with_metrics = args, events, metrics
        kept = {(run.name, run.kind): run for run in self.runs}
        self.runs = [kept.get((pc.name, pc.kind)) or ProbeRun(pc.name, pc.kind, self._registry[pc.name]) for pc in wanted]
        for name, run in list(self._first.items()):  # a probe's metrics entry went, its events entry stays
            if all(r is not run for r in self.runs):
                heir = next(r for r in self.runs if r.name == name)
                heir.state, heir.reason, heir.last_error = run.state, run.reason, run.last_error
                heir.errors, heir.last_duration, heir.collections = run.errors, run.last_duration, run.collections
                self._first[name] = heir
        self._start([run for run in self.runs if run.probe is None and run.state is State.STOPPED])
        changes.failed = {run.name: run.reason for run in self.runs
                          if run.name in changes.added + changes.restarted and run.state is State.FAILED}
        return changes

    def remove(self, name: str) -> None:
        """Stop probe ``name`` completely (its events no longer polled, then its ``stop``) and
        forget it; its series are no longer reported, as a vanished namespace's are not."""
        self.pump.unwatch(name)
        first = self._first.pop(name, None)
        if first is not None and first.probe is not None:
            try:
                first.probe.stop()
            except Exception as exc:  # isolation: the reload goes on
                log.warning("probe %s: stop: %s: %s", name, error_type(exc), exc)
        self.runs = [run for run in self.runs if run.name != name]
        self._args.pop(name, None)
        self._with_events.discard(name)
        self._with_metrics.discard(name)
        log.info("probe %s stopped", name)

    def set_bpf_stats(self, enabled: bool) -> str:
        """Turn the kernel's per-program statistics on or off; the reason when it cannot be on."""
        if enabled and self.program_stats is None:
            stats = ProgramStats()
            if not stats.enable():
                return stats.reason
            self.program_stats = stats
        elif not enabled and self.program_stats is not None:
            self.program_stats.close()
            self.program_stats = None
        self.objects.set_stats(self.program_stats is not None)
        return ""

    def _context(self, name: str) -> ProbeContext:
        def watch(fd: int, consume: Callable[[], None]) -> None:
            self.pump.watch(name, fd, consume)

        return ProbeContext(name=name, proc_root=self.proc_root, cycle=self.cycle,
                            cgroup_root=self.cgroup_root, sys_root=self.sys_root,
                            events_enabled=name in self._with_events, emit=self._emit, watch=watch,
                            emit_batch=self._emit_batch, objects=self.objects)

    def collect(self, cycle: Cycle) -> list[Sample]:
        """Collect every running probe once over ``cycle``; return their samples plus the runtime's own.

        A probe configured only under ``event.probes`` is collected too, for its event-loss and
        map-full counters (kept in its kernel maps) and its upkeep, but its metrics are not
        reported: nobody asked for them.
        """
        self.cycle = cycle
        samples: list[Sample] = []
        for run in self.runs:
            if run.state is not State.RUNNING or self._first.get(run.name) is not run:
                continue
            if run.probe is None or run.ctx is None:
                continue
            run.ctx.cycle = cycle
            t0 = time.perf_counter()
            try:
                got = list(run.probe.collect())
            except Exception as exc:  # isolation
                self._record_error(run, exc)
                got = []
            run.last_duration = time.perf_counter() - t0
            run.collections += 1
            for exc in run.ctx.errors:
                self._record_error(run, exc)
            run.ctx.errors.clear()
            if run.name not in self._with_metrics:  # keep its health (losses, full maps) only
                got = [s for s in got if s.instrument.name.startswith("kubeskoop.agent.")]
            samples += got
        samples += self.self_samples()
        return samples

    def _record_error(self, run: ProbeRun, exc: BaseException) -> None:
        kind = error_type(exc)
        message = f"{kind}: {exc}"
        if denied(exc):
            self._record_denied(run, message)
        elif message != run.last_error:
            log.warning("probe %s: %s", run.name, message)
        run.last_error = message
        run.errors[kind] += 1

    @staticmethod
    def _record_denied(run: ProbeRun, message: str) -> None:
        run.denials += 1
        now = time.monotonic()
        if not run.denied:
            run.denied = message + _unmet(run.spec)
            run.denials_logged = (now, run.denials)
            log.warning("probe %s failed: lacks a privilege: %s (further refusals are counted)",
                        run.name, run.denied)
        elif now - run.denials_logged[0] >= DENIED_LOG_EVERY:
            log.warning("probe %s: %d more operations refused for want of a privilege (last: %s)",
                        run.name, run.denials - run.denials_logged[1], message)
            run.denials_logged = (now, run.denials)

    def denied(self) -> dict[str, str]:
        """Probe -> why it is failing for want of a privilege, for each probe that is."""
        return {run.name: run.denied for run in self.runs if run.denied}

    def self_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for run in self.runs:
            if self._first.get(run.name, run) is not run:
                continue  # one set of self-metrics per probe instance
            probe_attr = (A.PROBE, run.name)
            out.append(Sample(I.AGENT_PROBE_STATE, 1, None, (probe_attr, (A.PROBE_STATE, run.reported_state.value))))
            if run.last_duration is not None:
                out.append(Sample(I.AGENT_PROBE_DURATION, run.last_duration, None, (probe_attr,)))
            errors = run.errors + Counter({"EventPumpError": self.pump.errors[run.name]} if self.pump.errors[run.name] else {})
            for kind, count in errors.items():
                out.append(Sample(I.AGENT_PROBE_ERRORS, count, None, (probe_attr, (A.ERROR_TYPE, kind))))
            out += self._program_samples(run, probe_attr)
            if run.name in self._with_events and run.ctx is not None:  # delivered: the event path's
                out.append(Sample(I.AGENT_EVENTS_LOST, run.ctx.decode_errors, None,
                                  (probe_attr, (A.LOSS_REASON, "decode_error"))))
        return out

    def _program_samples(self, run: ProbeRun, probe_attr: tuple[str, str]) -> list[Sample]:
        if run.state is not State.RUNNING:
            return []
        misses = getattr(run.probe, "bpf_misses", dict)
        out = [Sample(I.AGENT_BPF_RECURSION_MISSES, count, None, (probe_attr, (A.BPF_PROGRAM, name)))
               for name, count in misses().items()]
        stats, programs = self.program_stats, getattr(run.probe, "bpf_programs", None)
        if stats is None or programs is None:
            return out
        costs = getattr(run.probe, "bpf_costs", dict)  # its share of a shared object's programs
        for name, got in ({name: stats.read(fd) for name, fd in programs().items()} | costs()).items():
            if got is not None:
                attrs = (probe_attr, (A.BPF_PROGRAM, name))
                out.append(Sample(I.AGENT_BPF_RUNS, got[0], None, attrs))
                out.append(Sample(I.AGENT_BPF_TIME, got[1] / 1e9, None, attrs))
        return out

    def stop(self) -> None:
        self.pump.stop()  # no consume() while probes close their buffers
        stopped: set[int] = set()
        for run in reversed(self.runs):
            probe = run.probe
            if probe is not None and id(probe) not in stopped:
                stopped.add(id(probe))
                try:
                    probe.stop()
                except Exception as exc:  # isolation: keep stopping the others
                    self._record_error(run, exc)
            if run.state in (State.RUNNING, State.STARTING):
                run.state = State.STOPPED
            run.probe = None
        self._first.clear()
        if self.program_stats is not None:
            self.program_stats.close()
            self.program_stats = None

    def status(self) -> list[dict[str, Any]]:
        return [run.status() for run in self.runs]
