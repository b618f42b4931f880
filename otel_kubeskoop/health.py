# SPDX-License-Identifier: Apache-2.0
"""What keeps a running agent from doing its job although its cycle goes on: the reasons
``/readyz`` answers 503 with, listed under ``problems`` in ``/status``.

- Probes failing for want of a privilege (a capability the agent was not given): the kernel
  refuses them in every namespace, and restarting changes nothing (``otel_kubeskoop/runtime.py``).
- Namespaces left out because the file-descriptor limit cannot hold them all
  (``otel_kubeskoop/limits.py``).
- Descriptors nearly exhausted: more than :data:`FD_PRESSURE` of the soft limit open, from
  whatever cause, at which point the next read may fail.

Readiness rather than liveness: in a DaemonSet an unready new agent holds a rolling update back,
where a restart loop would only hide the cause.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["FD_PRESSURE", "problems"]

#: The share of the soft descriptor limit open at which the agent is short of descriptors.
FD_PRESSURE = 0.9


def problems(*, denied: Mapping[str, str], left_out: int, found: int, open_fds: int,
             soft_limit: int) -> list[str]:
    """One sentence per problem; none when the agent is doing its job."""
    out = [f"probe {name} lacks a privilege: {why}" for name, why in sorted(denied.items())]
    if left_out:
        out.append(f"{left_out} of {found} network namespaces not watched: more than the "
                   f"file-descriptor limit ({soft_limit}) can hold")
    if open_fds >= FD_PRESSURE * soft_limit:
        out.append(f"{open_fds} of {soft_limit} file descriptors open")
    return out
