# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop cleanup``: take off what agents left in the kernel.

In every network namespace of the node, on every interface: the ``flow`` probe's TC filters whose
programs no live process holds (left by an agent that was killed), and the clsact qdiscs
otel-kubeskoop made (they carry its marker) on which nothing else is left. Filters of a live agent
stay, and so does every qdisc without the marker (``otel_kubeskoop/bpf/tc_owner.py``).

With ``--prestop`` the processes in the caller's own cgroup do not count as live: run as a
Kubernetes ``preStop`` hook in the agent's container, it takes off that agent's filters (which a
SIGKILL at the end of the grace period would otherwise leave) and never another pod's agent's,
such as the new one of a rolling update.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field

from otel_kubeskoop.bpf import tc, tc_owner
from otel_kubeskoop.probes.flow import PROGRAMS, TC_PRIORITY
from otel_kubeskoop.topology import nsexec
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery

__all__ = ["Cleanup", "cleanup", "own_cgroup"]


@dataclass
class Cleanup:
    """What one cleanup found and did."""

    namespaces: int = 0
    filters_removed: int = 0
    qdiscs_removed: int = 0
    filters_left: int = 0  # of live agents (or of agents whose liveness could not be told)
    incomplete: str = ""  # why liveness could not be told, if it could not
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"network namespaces cleaned: {self.namespaces}; removed {self.filters_removed} TC "
                f"filters and {self.qdiscs_removed} clsact qdiscs; left {self.filters_left} filters "
                "of live agents")
        if self.incomplete:
            text += f" (or of agents whose liveness cannot be told: {self.incomplete})"
        return text + "".join(f"\nerror: {e}" for e in self.errors)


def _clean_netns(holders: tc_owner.Holders) -> tuple[int, int, int, list[str]]:
    """Runs inside one namespace: (filters removed, qdiscs removed, filters left, errors)."""
    filters = qdiscs = left = 0
    errors: list[str] = []
    for ifindex, name in socket.if_nameindex():
        if name == "lo":
            continue
        try:
            present = {d: tc.filters(ifindex, d) for d in tc_owner.DIRECTIONS}
            removed, kept = tc_owner.reap(ifindex, present, TC_PRIORITY, set(PROGRAMS.values()),
                                          None, holders)
            filters, left = filters + removed, left + kept
            if any(tc_owner.is_marker(f) for f in present["ingress"]):
                qdiscs += tc_owner.release_clsact(ifindex)
        except (OSError, ValueError) as exc:  # ValueError: an undecodable filter dump
            errors.append(f"interface {name}: {exc}")
    return filters, qdiscs, left, errors


def own_cgroup() -> bytes:
    """This process's ``cgroup`` file, as it sees it (whatever ``proc_root`` is)."""
    with open("/proc/self/cgroup", "rb") as f:
        return f.read()


def cleanup(proc_root: str = "/proc", netns_dir: str = "/run/netns", *,
            ignore_cgroup: bytes | None = None) -> Cleanup:
    """Clean every namespace found under ``proc_root`` and ``netns_dir`` (see the module
    docstring); processes whose ``cgroup`` reads ``ignore_cgroup`` do not count as live
    (``--prestop``: :func:`own_cgroup`)."""
    out = Cleanup()
    holders = tc_owner.Holders(proc_root, ignore_cgroup=ignore_cgroup)
    with NetnsDiscovery(proc_root=proc_root, netns_dir=netns_dir) as discovery:
        jobs, inodes, fds = [], [], []
        try:
            for inode, ns in discovery.scan().items():
                try:
                    fd = ns.open_nsfd()
                except (OSError, LookupError) as exc:
                    out.errors.append(f"network namespace {inode}: {exc}")
                    continue
                fds.append(fd)
                inodes.append(inode)
                jobs.append((fd, functools.partial(_clean_netns, holders)))
            results = nsexec.run_in_netns(jobs, what="cleanup")
        finally:
            for fd in fds:
                os.close(fd)
    for inode, result in zip(inodes, results):
        if isinstance(result, BaseException):
            out.errors.append(f"network namespace {inode}: {result}")
            continue
        out.namespaces += 1
        out.filters_removed += result[0]
        out.qdiscs_removed += result[1]
        out.filters_left += result[2]
        out.errors += [f"network namespace {inode}: {e}" for e in result[3]]
    out.incomplete = holders.incomplete
    return out
