# SPDX-License-Identifier: Apache-2.0
"""The file-descriptor limit the agent runs within, and how many namespaces fit in it.

Container runtimes hand processes a soft ``RLIMIT_NOFILE`` of 1024 (containerd 2.x leaves systemd's
default) under a hard limit far higher, and the agent holds descriptors per network namespace, so
at start it raises its soft limit to the hard one (:func:`raise_nofile`; lowering or raising up to
the hard limit needs no privilege, https://man7.org/linux/man-pages/man2/setrlimit.2.html).

What it cannot raise it budgets. Per namespace the agent holds one descriptor (the namespace's
handle, ``otel_kubeskoop/topology/netns.py``), one more per netlink socket the configured probes
keep in each namespace (one per netlink probe and kind: ``qdisc``, ``tcpsummary``, ``conntrack``
metrics and ``conntrack`` events), and two for a moment while a thread enters it (the namespace's
fd and the thread's duplicate, ``otel_kubeskoop/topology/nsexec.py``). :func:`namespace_cap` keeps
:data:`RESERVE` descriptors for everything else (HTTP connections, exporters, BPF objects, the
files being read) and divides the rest: namespaces past the cap are left out and counted, instead
of every read of every namespace failing for want of a descriptor.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable

from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Scope, Source
from otel_kubeskoop.probes import REGISTRY

__all__ = ["RESERVE", "namespace_cap", "open_fds", "per_namespace", "raise_nofile"]

log = logging.getLogger(__name__)

#: Descriptors kept for what does not scale with namespaces.
RESERVE = 256
_TRANSIENT = 2  # a namespace's fd and the entering thread's duplicate


def raise_nofile() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (to ``fs.nr_open`` if that is
    unlimited); returns the (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            target = int(f.read())
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:  # refused by a security module, for one
            log.warning("file descriptors: cannot raise the soft limit %d to the hard limit %d: %s",
                        soft, hard, exc)
            return soft, hard
    log.info("file descriptors: soft limit %d (was %d), hard limit %d", target, soft, hard)
    return target, hard


def open_fds() -> int:
    """Descriptors this process has open now."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own


def per_namespace(probes: Iterable[ProbeConfig]) -> int:
    """Descriptors one namespace costs with these probes configured (see the module docstring)."""
    sockets = sum(1 for pc in probes if pc.name in REGISTRY
                  and REGISTRY[pc.name].source is Source.NETLINK
                  and REGISTRY[pc.name].scope is Scope.NETNS)
    return 1 + sockets + _TRANSIENT


def namespace_cap(soft_limit: int, probes: Iterable[ProbeConfig]) -> int:
    """How many namespaces fit in ``soft_limit`` descriptors with these probes."""
    return max(1, (soft_limit - RESERVE) // per_namespace(probes))
