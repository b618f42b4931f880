# SPDX-License-Identifier: Apache-2.0
"""io on the real kernel: workers in pod cgroups make known read/write system calls and storage
I/O (buffered writes and O_DIRECT reads on this machine's ext4 disk), fork and reap children,
and exit; the pod's counters must move by exactly what they did, and never go backwards.

First values are checked against /proc/<pid>/io read here independently while the workers are
idle; every later value against the previous one plus the exact effect of the commands (each
command also costs the worker one read of its stdin and one write of its answer).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import io
from tests.kube_apiserver import container_id
from tests.privileged.netnsutil import netns, require_root
from tests.privileged.podutil import pod_cgroup
from tests.privileged.probes.podworker import add, host_popen, pid_io, start_worker

require_root()
pytestmark = pytest.mark.privileged

NAMES = ("kubeskoop.io.readsyscall", "kubeskoop.io.writesyscall", "kubeskoop.io.readbytes", "kubeskoop.io.writebytes")
PAGE = 4096
CMD = (1, 1, 0, 0)  # one command: its read, its answer


class IoRun:
    def __init__(self) -> None:
        self.ctx = ProbeContext("io")
        self.probe = io.SPEC.factory(io.SPEC.args(), self.ctx)
        self.probe.start()

    def collect(self) -> dict[str, tuple[int, ...]]:
        """One collection in a new cycle: {pod uid: (syscr, syscw, read_bytes, write_bytes)}."""
        self.ctx.cycle = Cycle()
        out: dict[str, dict[str, int]] = {}
        for s in self.probe.collect():
            assert s.pod_uid is not None and s.netns is None and s.attributes == ()
            assert s.instrument.name not in out.setdefault(s.pod_uid, {}), "duplicate series"
            out[s.pod_uid][s.instrument.name] = s.value
        assert not self.ctx.errors, self.ctx.errors
        return {uid: tuple(v[n] for n in NAMES) for uid, v in out.items()}


def fs_type(path: Path) -> str:
    """The type of the filesystem ``path`` is on (the longest mount point above it)."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount, fstype = fields[4], fields[fields.index("-") + 1]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
            best, kind = mount, fstype
    return kind


@pytest.fixture
def disk_dir(tmp_path):
    """A directory on a disk filesystem: storage byte counters stay 0 on tmpfs (no block I/O)."""
    if fs_type(tmp_path) not in ("tmpfs", "ramfs"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="ksk-io-", dir=Path(__file__).resolve().parents[3]))
    assert fs_type(path) not in ("tmpfs", "ramfs"), "no disk filesystem to write to"
    try:
        yield path
    finally:
        shutil.rmtree(path)


def on_disk(path, pages: int) -> None:
    """A file of ``pages`` pages written through to the disk (so an O_DIRECT read hits it)."""
    with open(path, "wb") as f:
        f.write(b"d" * (PAGE * pages))
        f.flush()
        os.fsync(f.fileno())


def test_io_per_pod_exact(disk_dir):
    on_disk(disk_dir / "data", 8)
    uid = str(uuid.uuid4())
    with netns() as a:
        app = start_worker(a.popen, threads=3)
        side = start_worker(a.popen, threads=0)
        with pod_cgroup(app.pid, uid, container_id(uid, "app")), \
                pod_cgroup(side.pid, uid, container_id(uid, "sidecar")):
            run = IoRun()
            first = run.collect()[uid]
            assert first == add(pid_io(app.pid), pid_io(side.pid)), "the sum over the pod's processes"

            app("read", 100)
            app("write", 50)
            c = run.collect()[uid]
            assert c == add(first, CMD, CMD, (100, 50, 0, 0))

            (disk_dir / "written").touch()
            app("diskwrite", disk_dir / "written", 6)  # 6 pages dirtied: write_bytes += 6 pages
            app("directread", disk_dir / "data", 8)  # one readv(2) of 8 pages from the disk
            d = run.collect()[uid]
            assert d == add(c, CMD, (0, 6, 0, 6 * PAGE), CMD, (1, 0, 8 * PAGE, 0))

            # A child that runs and is reaped between two collections: never seen by the probe,
            # its reads reach the pod through its parent's counters.
            app("fork", 30)
            e = run.collect()[uid]
            assert e == add(d, CMD, (30, 0, 0, 0))

            # A child seen alive, then reaped: counted once (by its parent, not also retired).
            child = app("spawn")
            f = run.collect()[uid]
            assert f == add(e, CMD) and child > 0 and pid_io(child) == (0, 0, 0, 0)
            app("reap", 20)  # the child's pipe read + 20 reads; the parent's pipe write
            g = run.collect()[uid]
            assert g == add(f, CMD, (1 + 20, 1, 0, 0))
            assert not os.path.exists(f"/proc/{child}")

            # A process whose parent is outside the pod (this test) exits: the pod's counters
            # keep what it did; a plain sum over live processes would drop by its totals.
            side("read", 10)
            h = run.collect()[uid]
            assert h == add(g, CMD, (10, 0, 0, 0))
            gone = pid_io(side.pid)
            side.stop()
            assert run.collect()[uid] == h
            assert add(pid_io(app.pid), gone) == h


def test_io_host_network_pod(disk_dir):
    """A hostNetwork pod's process is in the host's network namespace: its samples carry its pod
    UID, not the node's."""
    uid = str(uuid.uuid4())
    agent = start_worker(host_popen, threads=2)
    try:
        with pod_cgroup(agent.pid, uid, container_id(uid, "agent")):
            run = IoRun()
            first = run.collect()[uid]
            assert first == pid_io(agent.pid)
            agent("read", 7)
            (disk_dir / "w").touch()
            agent("diskwrite", disk_dir / "w", 2)
            assert run.collect()[uid] == add(first, CMD, (7, 0, 0, 0), CMD, (0, 2, 0, 2 * PAGE))
    finally:
        agent.stop()
