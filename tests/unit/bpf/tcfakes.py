# SPDX-License-Identifier: Apache-2.0
"""Fakes for the TC attach tests: a namespace with three interfaces, and the ``bpf.tc`` calls
over an in-memory table of qdiscs and filters."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from otel_kubeskoop.bpf import tc
from otel_kubeskoop.topology import nsexec

NET_DEV = (b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
           + b"".join(b"%s: " % n.encode() + b" 0" * 16 + b"\n" for n in ("lo", "eth0", "net1")))


class FakeNs:
    def __init__(self, inode: int, is_host: bool = False, names: bytes = NET_DEV,
                 gone: BaseException | None = None) -> None:
        self.inode, self.is_host, self.names, self.gone = inode, is_host, names, gone

    def read(self, relpath: str) -> bytes:
        return self.names

    def path(self, relpath: str) -> str:
        return f"<{self.inode}>/{relpath}"

    def open_nsfd(self) -> int:
        if self.gone is not None:
            raise self.gone
        return os.open("/dev/null", os.O_RDONLY)


class FakeTC:
    """The filters and qdiscs of one namespace's interfaces, as bpf.tc would change them.
    ``refuse_detach`` holds the ifindexes whose filters the kernel refuses to take off; ``ours``
    are the filters at (``handle``, ``priority``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, handle: int, priority: int) -> None:
        self.handle, self.priority = handle, priority
        self.qdiscs: set[int] = set()
        self.table: dict[tuple[int, str, int, int], int] = {}  # (ifindex, dir, handle, prio) -> prog id
        self.names = {11: "flow_ingress", 12: "flow_egress", 21: "flow_ingress", 22: "flow_egress",
                      99: "cilium_from_co"}
        self.index = {"lo": 1, "eth0": 2, "net1": 3}
        self.refuse_detach: set[int] = set()
        for name in ("create_clsact", "destroy_clsact", "attach", "query", "detach", "filters",
                     "program_name"):
            monkeypatch.setattr(tc, name, getattr(self, name))
        monkeypatch.setattr(nsexec, "run_in_netns", self.run_in_netns)
        monkeypatch.setattr(socket, "if_nametoindex", self.if_nametoindex)

    def if_nametoindex(self, name: str) -> int:
        if name not in self.index:
            raise OSError(19, "No such device")
        return self.index[name]

    def run_in_netns(self, jobs, **_kwargs):
        out = []
        for _fd, job in jobs:
            try:
                out.append(job())
            except BaseException as exc:
                out.append(exc)
        return out

    def create_clsact(self, ifindex: int) -> bool:
        made = ifindex not in self.qdiscs
        self.qdiscs.add(ifindex)
        return made

    def destroy_clsact(self, ifindex: int) -> bool:
        self.table = {k: v for k, v in self.table.items() if k[0] != ifindex}
        had = ifindex in self.qdiscs
        self.qdiscs.discard(ifindex)
        return had

    def attach(self, ifindex, direction, prog_fd, handle, priority) -> int:
        assert ifindex in self.qdiscs
        self.table[(ifindex, direction, handle, priority)] = prog_fd  # fds stand for ids here
        return prog_fd

    def query(self, ifindex, direction, handle, priority):
        return self.table.get((ifindex, direction, handle, priority))

    def detach(self, ifindex, direction, handle, priority) -> bool:
        if ifindex in self.refuse_detach:
            raise OSError(errno.EBUSY, f"detaching the TC {direction} filter of interface {ifindex}")
        return self.table.pop((ifindex, direction, handle, priority), None) is not None

    def filters(self, ifindex, direction):
        return [(h, p) for (i, d, h, p) in self.table if i == ifindex and d == direction]

    def program_name(self, prog_id):
        return self.names.get(prog_id)

    def ours(self, ifindex: int) -> dict[str, int]:
        return {d: v for (i, d, h, p), v in self.table.items()
                if i == ifindex and (h, p) == (self.handle, self.priority)}
