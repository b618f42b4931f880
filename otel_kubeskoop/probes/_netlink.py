# SPDX-License-Identifier: Apache-2.0
"""Shared shape of the netlink probes that read each namespace through a socket of its own (qdisc,
tcpsummary; conntrack for its statistics).

- :meth:`NetnsNetlinkProbe.start` makes the probe's request once, on a socket in the agent's own
  namespace (:func:`request_here`): a kernel without the netlink family, or an agent without the
  right to use it, makes the probe unavailable at start, with the reason.
- :meth:`NetnsNetlinkProbe.collect` brings the per-namespace sockets
  (:class:`~otel_kubeskoop.netlink.sockets.NetnsSockets`) in line with the namespace scan and
  reads every namespace. A namespace that went away between the scan and opening its socket is no
  error (:func:`report_failures`); a socket whose read failed is closed, since what it still holds
  is unknown, and opened anew at the next collection.
"""

from __future__ import annotations

import abc

import logging
import socket
from collections.abc import Callable
from typing import ClassVar

from otel_kubeskoop.netlink.core import DecodeError
from otel_kubeskoop.netlink.sockets import DEFAULT_TIMEOUT, NetnsSockets
from otel_kubeskoop.probe import ProbeContext, Sample, Unavailable
from otel_kubeskoop.topology.netns import NetnsGone

log = logging.getLogger(__name__)

__all__ = [
    "NetlinkSequence",
    "NetnsNetlinkProbe",
    "report_failures",
    "request_here",
]


class NetlinkSequence:
    """Sequence numbers for a probe's netlink requests: even and increasing (31 bits), so a probe
    may send two requests as ``seq`` and ``seq + 1``."""

    _seq = 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 2) & 0x7FFFFFFF
        return self._seq


def request_here(protocol: int, request: Callable[[socket.socket], object]) -> None:
    """``request(sock)`` on a new netlink socket of ``protocol`` in the agent's own namespace,
    closed afterwards. Raises what the socket or the request raise (``OSError``, ``DecodeError``)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol) as sock:
        sock.settimeout(DEFAULT_TIMEOUT)
        request(sock)


def report_failures(ctx: ProbeContext, failures: dict[int, BaseException]) -> None:
    """Report why namespaces got no socket (``NetnsSockets.failures``), except those that went
    away since the scan (logged at debug level)."""
    for inode, exc in failures.items():
        if isinstance(exc, NetnsGone):
            log.debug("%s: namespace %d went away: %s", ctx.name, inode, exc)
        else:
            ctx.report(exc)


class NetnsNetlinkProbe(NetlinkSequence, abc.ABC):
    """A netlink probe with one socket of ``PROTOCOL`` per namespace.

    Subclasses set ``PROTOCOL`` and implement :meth:`check`, :meth:`unavailable` and :meth:`read`.
    """

    PROTOCOL: ClassVar[int]  # NETLINK_ROUTE, NETLINK_SOCK_DIAG...

    def __init__(self, args: object, ctx: ProbeContext) -> None:
        self.ctx = ctx
        self.sockets = NetnsSockets(self.PROTOCOL)

    # --- subclass hooks ----------------------------------------------------------------------

    @abc.abstractmethod
    def check(self, sock: socket.socket) -> None:
        """The request :meth:`start` makes in the agent's namespace."""

    @abc.abstractmethod
    def unavailable(self, exc: OSError | DecodeError) -> str:
        """Why the probe is unavailable, :meth:`check` having raised ``exc``."""

    @abc.abstractmethod
    def read(self, inode: int, sock: socket.socket) -> list[Sample]:
        """The samples of namespace ``inode``, read through its socket."""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            request_here(self.PROTOCOL, self.check)
        except (OSError, DecodeError) as exc:
            raise Unavailable(self.unavailable(exc)) from None

    def collect(self) -> list[Sample]:
        socks = self.sockets.sync(self.ctx.cycle.namespaces)
        report_failures(self.ctx, self.sockets.failures)
        out: list[Sample] = []
        for inode, sock in socks.items():
            try:
                out += self.read(inode, sock)
            except (OSError, DecodeError) as exc:
                self.sockets.discard(inode)  # its state is unknown now; the next cycle opens anew
                self.ctx.report(exc)
        return out

    def stop(self) -> None:
        self.sockets.close()
