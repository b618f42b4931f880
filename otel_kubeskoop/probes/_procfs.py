# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the procfs probes: read one file per namespace, isolate per-namespace failures."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from otel_kubeskoop.probe import ProbeContext, Sample, Unavailable
from otel_kubeskoop.procfs import FileSource, ParseError, ProcDir
from otel_kubeskoop.topology.netns import Netns, NetnsGone

log = logging.getLogger(__name__)


def host_source(ctx: ProbeContext) -> FileSource:
    """The host namespace's /proc/<pid> view, or the proc root before the first scan."""
    return ctx.cycle.host if ctx.cycle.host is not None else ProcDir(ctx.proc_root)


def require_file(ctx: ProbeContext, relpath: str, why: str = "") -> None:
    """Raise :class:`Unavailable` when the host has no such /proc file."""
    source = host_source(ctx)
    try:
        source.read(relpath)
    except FileNotFoundError:
        raise Unavailable(f"{source.path(relpath)} does not exist" + (f": {why}" if why else "")) from None


class NetnsProcfsProbe(abc.ABC):
    """A probe that reads /proc/<pid>/net/* once per network namespace.

    Subclasses set ``required`` (checked at start) and implement ``collect_netns``, which returns a
    list so that a file failing half-way contributes nothing rather than half its samples.
    """

    required: tuple[str, ...] = ()

    def __init__(self, args: Any, ctx: ProbeContext) -> None:
        self.args = args
        self.ctx = ctx

    def start(self) -> None:
        for relpath in self.required:
            require_file(self.ctx, relpath)

    def stop(self) -> None:
        pass

    @abc.abstractmethod
    def collect_netns(self, ns: Netns) -> list[Sample]:
        """Samples of one namespace."""

    def collect(self) -> Iterator[Sample]:
        for ns in list(self.ctx.cycle.namespaces.values()):
            try:
                samples = self.collect_netns(ns)
            except NetnsGone:
                log.debug("%s: namespace %d went away during collection", self.ctx.name, ns.inode)
                continue
            except FileNotFoundError as exc:
                log.debug("%s: no data in namespace %d: %s", self.ctx.name, ns.inode, exc)
                continue
            except (ParseError, OSError) as exc:
                self.ctx.report(exc)
                continue
            yield from samples


def counters(specs: Iterable[Any], values: dict[str, int], netns: int | None,
             attributes: tuple[tuple[str, str | int], ...] = ()) -> list[Sample]:
    """Samples for every instrument whose source key is present (an absent key is no data)."""
    out = []
    for spec in specs:
        value = values.get(spec.key)
        if value is not None:
            out.append(Sample(spec, value, netns, attributes))
    return out
