# SPDX-License-Identifier: Apache-2.0
"""Fakes for the TC attach tests: a namespace with three interfaces, the ``bpf.tc`` calls over an
in-memory table of qdiscs and filters, and a fake ``/proc`` whose processes hold BPF programs."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import tc, tc_owner
from otel_kubeskoop.netlink.tc import TcFilter
from otel_kubeskoop.topology import nsexec

NET_DEV = (b"Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
           + b"".join(b"%s: " % n.encode() + b" 0" * 16 + b"\n" for n in ("lo", "eth0", "net1")))
ETH_P_ALL = 3
PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
MARKER_ID = 77


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


def fake_proc(root: Path, held: dict[int, list[int]], kthreadd: bool = True) -> str:
    """A ``/proc`` tree: kthreadd at pid 2 (unless not ``kthreadd``) and, for each pid of
    ``held``, descriptors on those BPF programs (``fd/<n>`` links and ``fdinfo/<n>``)."""
    (root / "2").mkdir(parents=True)
    (root / "2" / "comm").write_text("kthreadd\n" if kthreadd else "sh\n")
    (root / "2" / "fd").mkdir()
    for pid, prog_ids in held.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "fdinfo").mkdir()
        (root / str(pid) / "cgroup").write_text(f"0::/pod{pid}\n")
        os.symlink("/dev/null", root / str(pid) / "fd" / "0")
        (root / str(pid) / "fdinfo" / "0").write_text("pos:\t0\nflags:\t02\n")
        for n, prog_id in enumerate(prog_ids, 3):
            os.symlink("anon_inode:bpf-prog", root / str(pid) / "fd" / str(n))
            (root / str(pid) / "fdinfo" / str(n)).write_text(
                f"pos:\t0\nflags:\t02000002\nprog_type:\t3\nprog_id:\t{prog_id}\n")
    return str(root)


class FakeTC:
    """The filters and qdiscs of one namespace's interfaces, as bpf.tc would change them.
    ``refuse_detach`` holds the ifindexes whose filters the kernel refuses to take off; program
    fds stand for program ids."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, priority: int) -> None:
        self.priority = priority
        self.qdiscs: set[int] = set()
        self.table: dict[tuple[int, str, int, int], tuple[int, int, str]] = {}  # -> (id, proto, name)
        self.names = {11: "flow_ingress", 12: "flow_egress", 21: "flow_ingress", 22: "flow_egress",
                      31: "flow_ingress", 32: "flow_egress", 99: "cilium_from_co",
                      MARKER_ID: tc_owner.MARK_NAME}
        self.index = {"lo": 1, "eth0": 2, "net1": 3}
        self.refuse_detach: set[int] = set()
        for name in ("create_clsact", "destroy_clsact", "attach", "detach", "filters",
                     "program_name", "load_passthrough", "add_bpf_filter"):
            monkeypatch.setattr(tc, name, getattr(self, name))
        monkeypatch.setattr(nsexec, "run_in_netns", self.run_in_netns)
        monkeypatch.setattr(socket, "if_nametoindex", self.if_nametoindex)
        monkeypatch.setattr(socket, "if_nameindex", self.if_nameindex)

    def if_nametoindex(self, name: str) -> int:
        if name not in self.index:
            raise OSError(19, "No such device")
        return self.index[name]

    def if_nameindex(self) -> list[tuple[int, str]]:
        return [(i, n) for n, i in self.index.items()]

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
        self.table[(ifindex, direction, handle, priority)] = (prog_fd, ETH_P_ALL, "")
        return prog_fd

    def add_bpf_filter(self, ifindex, direction, prog_fd, handle, priority, protocol, name) -> bool:
        assert ifindex in self.qdiscs
        if (ifindex, direction, handle, priority) in self.table:
            return False
        self.table[(ifindex, direction, handle, priority)] = (MARKER_ID, protocol, name)
        return True

    def load_passthrough(self, name: str) -> int:
        return os.open("/dev/null", os.O_RDONLY)

    def detach(self, ifindex, direction, handle, priority) -> bool:
        if ifindex in self.refuse_detach:
            raise OSError(errno.EBUSY, f"detaching the TC {direction} filter of interface {ifindex}")
        return self.table.pop((ifindex, direction, handle, priority), None) is not None

    def filters(self, ifindex, direction) -> list[TcFilter]:
        return [TcFilter(i, PARENT[d], h, p, proto, "bpf", prog_id, name or f"{self.names[prog_id]}:[{prog_id}]")
                for (i, d, h, p), (prog_id, proto, name) in self.table.items()
                if i == ifindex and d == direction]

    def program_name(self, prog_id):
        return self.names.get(prog_id)

    def put(self, ifindex: int, direction: str, handle: int, prog_id: int, priority: int | None = None) -> None:
        """A filter someone else attached (a qdisc is made for it if there is none)."""
        self.qdiscs.add(ifindex)
        self.table[(ifindex, direction, handle, priority or self.priority)] = (prog_id, ETH_P_ALL, "")

    def of(self, ifindex: int, handle: int) -> dict[str, int]:
        """direction -> program id of the filters at (handle, our priority) on the interface."""
        return {d: v[0] for (i, d, h, p), v in self.table.items()
                if i == ifindex and (h, p) == (handle, self.priority)}

    def marked(self, ifindex: int) -> bool:
        return any(tc_owner.is_marker(f) for f in self.filters(ifindex, "ingress"))
