# SPDX-License-Identifier: Apache-2.0
"""What keeps a running agent from doing its job although its cycle goes on: the reasons
``/readyz`` answers 503 with, listed under ``problems`` in ``/status``.

- Probes failing for want of a privilege (a capability the agent was not given): the kernel
  refuses them in every namespace, and restarting changes nothing (``otel_kubeskoop/runtime.py``).
- Namespaces the scan may not see: other processes' ``/proc/<pid>/ns/net`` refused to an agent
  without ``CAP_SYS_PTRACE`` (ptrace access mode checking,
  https://man7.org/linux/man-pages/man2/ptrace.2.html). With the capability a refusal is a process
  more privileged than the agent (a sandboxed init) and no problem.
- Namespaces left out because the file-descriptor limit cannot hold them all
  (``otel_kubeskoop/limits.py``).
- Descriptors nearly exhausted: more than :data:`FD_PRESSURE` of the soft limit open, from
  whatever cause, at which point the next read may fail.

Readiness rather than liveness: in a DaemonSet an unready new agent holds a rolling update back,
where a restart loop would only hide the cause.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_kubeskoop import capabilities

__all__ = ["FD_PRESSURE", "can_ptrace", "problems"]

#: The share of the soft descriptor limit open at which the agent is short of descriptors.
FD_PRESSURE = 0.9


def can_ptrace() -> bool:
    """Whether this process holds ``CAP_SYS_PTRACE``."""
    return "CAP_SYS_PTRACE" in capabilities.held()


def problems(*, denied: Mapping[str, str], left_out: int, found: int, open_fds: int,
             soft_limit: int, scan_refused: int = 0, ptrace: bool = True) -> list[str]:
    """One sentence per problem; none when the agent is doing its job."""
    out = [f"probe {name} lacks a privilege: {why}" for name, why in sorted(denied.items())]
    if scan_refused and not ptrace:
        out.append(f"the network namespaces of {scan_refused} processes cannot be read without "
                   "CAP_SYS_PTRACE: their pods are not watched")
    if left_out:
        out.append(f"{left_out} of {found} network namespaces not watched: more than the "
                   f"file-descriptor limit ({soft_limit}) can hold")
    if open_fds >= FD_PRESSURE * soft_limit:
        out.append(f"{open_fds} of {soft_limit} file descriptors open")
    return out
