# SPDX-License-Identifier: Apache-2.0
"""Which Linux capabilities each probe needs, which ones this process holds, and what is missing.

The agent runs as root inside its container but with only a few capabilities (the Helm chart drops
all others), so a probe can lack one. This module says which, before the probe fails with an
``EPERM`` far from its cause: ``run`` logs it at start and ``doctor`` reports it.

What each need is for (measured by ``tests/deploy/test_least_privilege.py``, which removes each
capability of the chart's set in turn and checks that exactly the probes named here lose it):

- ``CAP_SYS_PTRACE``: the namespace scan reads ``/proc/<pid>/ns/net`` and ``/proc/<pid>/cgroup``
  of other processes, which the kernel allows only with ptrace read access
  (``ptrace_may_access``): a process holding fewer capabilities than its target (the node's own
  processes hold all of them) or running as another user has it only with ``CAP_SYS_PTRACE``.
  Without it the host's namespace and every pod's attribution are lost, and ``ipvs`` would read
  the agent's own namespace. ``/proc/<pid>/io`` and ``/proc/<pid>/fd`` need it too.
  https://man7.org/linux/man-pages/man2/ptrace.2.html ("Ptrace access mode checking").
- ``CAP_DAC_READ_SEARCH``: ``/proc/<pid>/io`` is mode 0400 and ``/proc/<pid>/fd`` mode 0500, owned
  by the process's user, so pods running as another user are readable only with it.
- ``CAP_SYS_ADMIN``: ``setns(2)`` into another network namespace: netlink probes open their sockets
  in each namespace, named namespaces with no process are read from inside, ``flow`` attaches in
  each pod's namespace. The kernel's ``bpf_capable()`` and ``perfmon_capable()`` accept it in place
  of ``CAP_BPF`` and ``CAP_PERFMON``, so with it those two add nothing.
- ``CAP_BPF`` + ``CAP_PERFMON`` (or ``CAP_SYS_ADMIN``): load eBPF programs, read their maps and
  attach them to tracepoints.
- ``CAP_NET_ADMIN``: ``ioctl(SIOCGSKNS)``, with which the netlink probes check the namespace each
  socket belongs to; nfnetlink answers only callers with it (``conntrack``); adding the TC
  ``clsact`` qdisc and BPF filters (``flow``).

Bits are those of ``linux/capability.h``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from otel_kubeskoop.probe import ProbeSpec, Scope, Source
from otel_kubeskoop.probes import REGISTRY

__all__ = [
    "BITS",
    "Need",
    "held",
    "lacking",
    "missing",
    "needs",
    "parse_capeff",
]

BITS: Mapping[str, int] = {
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}


@dataclass(frozen=True, slots=True)
class Need:
    """One thing a probe does that needs a privilege: satisfied by any one of ``any_of``'s sets."""

    what: str
    any_of: tuple[frozenset[str], ...]

    def met_by(self, caps: frozenset[str]) -> bool:
        return any(option <= caps for option in self.any_of)

    def __str__(self) -> str:
        return " or ".join("+".join(sorted(option)) for option in self.any_of) + f" ({self.what})"


def _one(cap: str, what: str) -> Need:
    return Need(what, (frozenset({cap}),))


SCAN = _one("CAP_SYS_PTRACE", "read other processes' /proc/<pid>/ns/net and cgroup to find namespaces and pods")
SETNS = _one("CAP_SYS_ADMIN", "setns into other network namespaces")
BPF = Need("load and attach eBPF programs",
           (frozenset({"CAP_BPF", "CAP_PERFMON"}), frozenset({"CAP_SYS_ADMIN"})))
SOCKET_NETNS = _one("CAP_NET_ADMIN", "ioctl(SIOCGSKNS) checks each netlink socket's namespace")
PROC_OF_OTHERS = _one("CAP_SYS_PTRACE", "read /proc/<pid>/io and /proc/<pid>/fd of pod processes")
PROC_OF_OTHER_USERS = _one("CAP_DAC_READ_SEARCH",
                           "read /proc/<pid>/io and /proc/<pid>/fd of pods running as another user")
NFNETLINK = _one("CAP_NET_ADMIN", "ctnetlink requests and conntrack event groups")
TC = _one("CAP_NET_ADMIN", "add the clsact qdisc and BPF filters")

# What a probe needs beyond what its source and scope imply.
_OWN: Mapping[str, tuple[Need, ...]] = {
    "conntrack": (NFNETLINK,),
    "flow": (SETNS, TC),
    "ipvs": (SCAN,),  # node scope, but read through the host namespace the scan finds
}


def needs(spec: ProbeSpec) -> tuple[Need, ...]:
    """What ``spec``'s probe needs, from its source and scope plus its own extras."""
    out: list[Need] = []
    if spec.scope in (Scope.NETNS, Scope.FLOW):
        out.append(SCAN)
    if spec.scope is Scope.NETNS and spec.source is not Source.BPF:
        out.append(SETNS)
    if spec.scope is Scope.NETNS and spec.source is Source.NETLINK:
        out.append(SOCKET_NETNS)
    if spec.scope is Scope.POD:
        out += (PROC_OF_OTHERS, PROC_OF_OTHER_USERS)
    if spec.source is Source.BPF:
        out.append(BPF)
    out += _OWN.get(spec.name, ())
    return tuple(dict.fromkeys(out))


def parse_capeff(status: str) -> frozenset[str]:
    """The capabilities named in :data:`BITS` that the ``CapEff:`` line of ``/proc/<pid>/status`` holds."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            eff = int(line.split()[1], 16)
            return frozenset(name for name, bit in BITS.items() if eff >> bit & 1)
    raise ValueError("no CapEff line in /proc/self/status")


def held() -> frozenset[str]:
    """The capabilities of :data:`BITS` this process holds (effective set)."""
    with open("/proc/self/status", encoding="ascii") as f:
        return parse_capeff(f.read())


def missing(specs: Iterable[ProbeSpec], caps: frozenset[str]) -> dict[str, list[Need]]:
    """Probe name -> the needs ``caps`` does not meet, for every probe that lacks something."""
    out: dict[str, list[Need]] = {}
    for spec in specs:
        unmet = [need for need in needs(spec) if not need.met_by(caps)]
        if unmet:
            out[spec.name] = unmet
    return out


def lacking(probe_names: Iterable[str]) -> list[str]:
    """One line per configured probe that this process lacks a capability for (unknown names,
    such as upstream probes not implemented, are left to the config check)."""
    specs = [REGISTRY[name] for name in dict.fromkeys(probe_names) if name in REGISTRY]
    return [f"probe {name} lacks " + "; ".join(str(n) for n in unmet)
            for name, unmet in missing(specs, held()).items()]
