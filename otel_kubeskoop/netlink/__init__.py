# SPDX-License-Identifier: Apache-2.0
"""Netlink readers, per network namespace. No OpenTelemetry and no Kubernetes imports.

- :mod:`~otel_kubeskoop.netlink.sockets`: netlink sockets made inside a namespace (``setns`` on a
  short-lived thread, only around ``socket()``), cached one per namespace and closed when the
  namespace goes; :func:`~otel_kubeskoop.netlink.sockets.dump`, the request/answer I/O.
- :mod:`~otel_kubeskoop.netlink.core`: bounded framing and attribute walking over bytes, with
  message layouts and attribute numbers taken from pyroute2's message classes.
- Pure decoders over recorded bytes, each with its ``read_*`` doing the I/O:
  :mod:`~otel_kubeskoop.netlink.sock_diag` (TCP sockets summary),
  :mod:`~otel_kubeskoop.netlink.tc` (qdiscs and interface names),
  :mod:`~otel_kubeskoop.netlink.conntrack` (ctnetlink statistics and events),
  :mod:`~otel_kubeskoop.netlink.rdma` (RDMA resource summary).

Requests are encoded by pyroute2; fixtures are in ``tests/fixtures/netlink/*.dump``.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def _pyroute2_without_its_init() -> None:
    """Make ``pyroute2`` importable as a bare package, without running its ``__init__``.

    That ``__init__`` imports every module of the library (IPDB, NDB with sqlite3, asyncio, plan9,
    wireguard, ...): 6.6 MiB of the agent's RSS, for message classes of ``pyroute2.netlink.*``,
    which import what they use themselves (``bench/results/outage_rss.json``). If something has
    imported ``pyroute2`` already, it stays as it is.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the imports below fail with their own error
    package = types.ModuleType("pyroute2")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package


_pyroute2_without_its_init()
