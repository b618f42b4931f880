# SPDX-License-Identifier: Apache-2.0
"""Run the configured probes: start, collect with failure isolation, stop; and report their health.

An exception in one probe's ``start`` or ``collect`` never reaches another probe: it is logged
(once per distinct message), counted by ``error.type``, and shown in ``/status``. The runtime's own
samples (per-probe duration, errors, state) go to the node resource like any other node-scope data.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Kind, Probe, ProbeContext, ProbeSpec, Sample, Unavailable
from otel_kubeskoop.probes import REGISTRY
from otel_kubeskoop.telemetry import attributes as A
from otel_kubeskoop.telemetry import instruments as I

log = logging.getLogger(__name__)


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    UNAVAILABLE = "unavailable"  # cannot run on this machine (Unavailable); not an agent fault
    FAILED = "failed"  # start raised something unexpected
    NOT_IMPLEMENTED = "not_implemented"  # an upstream probe name planned for a later version
    STOPPED = "stopped"


def error_type(exc: BaseException) -> str:
    """A low-cardinality ``error.type`` value: the exception's class name."""
    return type(exc).__name__


@dataclass
class ProbeRun:
    """One configured probe and what the runtime knows about it."""

    name: str
    kind: Kind
    spec: ProbeSpec | None
    probe: Probe | None = None
    ctx: ProbeContext | None = None
    state: State = State.STOPPED
    reason: str = ""  # why unavailable or failed
    last_error: str = ""
    errors: Counter[str] = field(default_factory=Counter)
    last_duration: float | None = None
    collections: int = 0

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value, "state": self.state.value}
        if self.reason:
            out["reason"] = self.reason
        if self.last_error:
            out["last_error"] = self.last_error
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.last_duration is not None:
            out["last_duration_seconds"] = round(self.last_duration, 6)
        return out


class ProbeRuntime:
    """Owns probe instances. Metrics-kind probes are collected each cycle; a probe configured for
    both kinds is one instance (no shared singletons as upstream has)."""

    def __init__(self, probes: Iterable[ProbeConfig], proc_root: str = "/proc",
                 registry: Mapping[str, ProbeSpec] = REGISTRY) -> None:
        self.cycle = Cycle()
        self.proc_root = proc_root
        self.runs: list[ProbeRun] = []
        self._first: dict[str, ProbeRun] = {}  # a probe configured for both kinds runs once
        for pc in probes:
            spec = registry.get(pc.name)
            run = ProbeRun(pc.name, pc.kind, spec)
            if pc.planned or spec is None:
                run.state = State.NOT_IMPLEMENTED
                run.reason = "not implemented in this version of otel-kubeskoop"
            self.runs.append(run)
        self._args = {pc.name: pc.args for pc in probes if not pc.planned}

    def start(self) -> None:
        for run in self.runs:
            if run.state is State.NOT_IMPLEMENTED or run.spec is None:
                continue
            first = self._first.setdefault(run.name, run)
            if first is not run:
                run.probe, run.ctx, run.state, run.reason = first.probe, first.ctx, first.state, first.reason
                continue
            ctx = ProbeContext(name=run.name, proc_root=self.proc_root, cycle=self.cycle)
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
                log.error("probe %s failed to start: %s", run.name, run.reason, exc_info=log.isEnabledFor(logging.DEBUG))
                continue
            run.probe = probe
            run.state = State.RUNNING
            log.info("probe %s (%s) running", run.name, run.kind.value)

    def collect(self) -> list[Sample]:
        """Collect every running metrics probe; return their samples plus the runtime's own."""
        samples: list[Sample] = []
        for run in self.runs:
            if run.kind is not Kind.METRICS or run.state is not State.RUNNING:
                continue
            if run.probe is None or run.ctx is None:
                continue
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
            samples += got
        samples += self.self_samples()
        return samples

    def _record_error(self, run: ProbeRun, exc: BaseException) -> None:
        kind = error_type(exc)
        message = f"{kind}: {exc}"
        if message != run.last_error:
            log.warning("probe %s: %s", run.name, message)
        run.last_error = message
        run.errors[kind] += 1

    def self_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for run in self.runs:
            if self._first.get(run.name, run) is not run:
                continue  # one set of self-metrics per probe instance
            probe_attr = (A.PROBE, run.name)
            out.append(Sample(I.AGENT_PROBE_STATE, 1, None, (probe_attr, (A.PROBE_STATE, run.state.value))))
            if run.last_duration is not None:
                out.append(Sample(I.AGENT_PROBE_DURATION, run.last_duration, None, (probe_attr,)))
            for kind, count in run.errors.items():
                out.append(Sample(I.AGENT_PROBE_ERRORS, count, None, (probe_attr, (A.ERROR_TYPE, kind))))
        return out

    def stop(self) -> None:
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

    def status(self) -> list[dict[str, Any]]:
        return [run.status() for run in self.runs]
