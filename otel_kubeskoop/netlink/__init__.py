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
