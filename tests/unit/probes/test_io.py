# SPDX-License-Identifier: Apache-2.0
"""io over the committed pod trees (tests/fixtures/pods), and over copies of them changed between
collections to play process exits, reaps and pid reuse: a pod's counters never go backwards and
count nothing twice.

Pods: A = pause 5000 + app 5001 (parent outside the pod, 4995) + its child 5002; B = a hostNetwork
agent 5101; C = a static pod 5201.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.probes import io
from otel_kubeskoop.procfs import ProcDir
from otel_kubeskoop.procfs.pid_io import read_pid_io

PODS = Path(__file__).resolve().parents[2] / "fixtures" / "pods"
A = "0c5f7e3a-8d1b-4b8e-9a51-2f6c3d7e8a90"
B = "7a3d2c1b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
C = "8daa50c3a64c9ff60bb9eab7b44b56fd"
KEYS = ("syscr", "syscw", "read_bytes", "write_bytes")
NAMES = ("kubeskoop.io.readsyscall", "kubeskoop.io.writesyscall", "kubeskoop.io.readbytes", "kubeskoop.io.writebytes")


def pid_io(proc: Path, pid: int) -> tuple[int, ...]:
    got = read_pid_io(ProcDir(str(proc / str(pid))))
    return tuple(getattr(got, k) for k in KEYS)


def total(proc: Path, pids) -> tuple[int, ...]:
    return tuple(map(sum, zip(*(pid_io(proc, p) for p in pids))))


class Run:
    """One probe instance collected repeatedly over a (copied) tree, a new cycle each time."""

    def __init__(self, root: Path, layout: str = "v2") -> None:
        self.root = root
        self.cgroup = root / "cgroup" / layout
        self.ctx = ProbeContext("io", proc_root=str(root / "proc"), cgroup_root=str(self.cgroup))
        self.probe = io.SPEC.factory(io.SPEC.args(), self.ctx)
        self.probe.start()

    def collect(self) -> dict[str, tuple[int, ...]]:
        self.ctx.cycle = Cycle()
        out: dict[str, dict[str, int]] = {}
        for s in self.probe.collect():
            assert s.netns is None and s.attributes == ()
            assert s.instrument.name not in out.setdefault(s.pod_uid, {}), "duplicate series"
            out[s.pod_uid][s.instrument.name] = s.value
        return {uid: tuple(v[n] for n in NAMES) for uid, v in out.items()}

    # Changes to the tree --------------------------------------------------------------------

    def set_io(self, pid: int, values: tuple[int, ...]) -> None:
        rest = dict(zip(KEYS, values))
        text = "".join(f"{k}: {rest.get(k, 0)}\n" for k in
                       ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes"))
        (self.root / "proc" / str(pid) / "io").write_text(text)

    def exit(self, pid: int) -> None:
        """The process is gone: out of /proc and out of its cgroup."""
        shutil.rmtree(self.root / "proc" / str(pid))
        for procs in self.cgroup.rglob("cgroup.procs"):
            lines = [line for line in procs.read_text().split() if line != str(pid)]
            procs.write_text("".join(f"{line}\n" for line in lines))

    def start(self, pid: int, like: int, starttime: int, values: tuple[int, ...], ppid: int | None = None) -> None:
        """A new process ``pid`` in the cgroup of ``like``."""
        shutil.copytree(self.root / "proc" / str(like), self.root / "proc" / str(pid), symlinks=True)
        fields = (self.root / "proc" / str(like) / "stat").read_text().split(") ", 1)[1].split()
        fields[21 - 3] = str(starttime)
        if ppid is not None:
            fields[1] = str(ppid)
        (self.root / "proc" / str(pid) / "stat").write_text(f"{pid} (new) {' '.join(fields)}\n")
        self.set_io(pid, values)
        for procs in self.cgroup.rglob("cgroup.procs"):
            if str(like) in procs.read_text().split():
                procs.write_text(procs.read_text() + f"{pid}\n")


def add(*vectors: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(map(sum, zip(*vectors)))


@pytest.fixture
def run(tmp_path) -> Run:
    shutil.copytree(PODS, tmp_path / "pods", symlinks=True)
    return Run(tmp_path / "pods")


@pytest.mark.parametrize("layout", ["v2", "v1", "hybrid"])
def test_first_collection_is_the_sum_over_processes(layout: str) -> None:
    got = Run(PODS, layout).collect()
    proc = PODS / "proc"
    assert got == {A: total(proc, (5000, 5001, 5002)), B: total(proc, (5101,)), C: total(proc, (5201,))}
    assert got[A] == (6 + 2310 + 40, 0 + 128 + 12, 4096000, 1048576 + 32768)


def test_process_exit_keeps_its_counts(run: Run) -> None:
    first = run.collect()[A]
    run.set_io(5001, add(pid_io(run.root / "proc", 5001), (10, 1, 0, 4096)))
    second = run.collect()[A]
    assert second == add(first, (10, 1, 0, 4096))
    run.exit(5001)  # reaped by containerd-shim, outside the pod: retired with its last values
    assert run.collect()[A] == second


def test_reaped_child_is_counted_once(run: Run) -> None:
    first = run.collect()[A]
    child = pid_io(run.root / "proc", 5002)
    # 5002 exits with 3 more reads; its parent 5001 (in the pod) reaps it: the kernel adds the
    # child's totals to the parent's /proc/5001/io.
    run.exit(5002)
    run.set_io(5001, add(pid_io(run.root / "proc", 5001), child, (3, 0, 0, 0)))
    assert run.collect()[A] == add(first, (3, 0, 0, 0))


def test_exited_child_not_yet_reaped_holds_the_counter(run: Run) -> None:
    first = run.collect()[A]
    child = pid_io(run.root / "proc", 5002)
    run.exit(5002)  # a zombie: out of the cgroup, its counts not yet in the parent's
    assert run.collect()[A] == first, "never below what was reported"
    run.set_io(5001, add(pid_io(run.root / "proc", 5001), child))
    assert run.collect()[A] == first
    run.set_io(5001, add(pid_io(run.root / "proc", 5001), (1, 1, 0, 0)))
    assert run.collect()[A] == add(first, (1, 1, 0, 0))


def test_pid_reuse_is_a_new_process(run: Run) -> None:
    first = run.collect()[B]
    old = pid_io(run.root / "proc", 5101)
    run.exit(5101)
    run.start(5101, like=5201, starttime=990000, values=(7, 3, 0, 0))  # same pid, C's cgroup, later start
    run.start(5102, like=5201, starttime=990001, values=(1, 1, 0, 0), ppid=5101)
    got = run.collect()
    assert got[B] == first == old, "B keeps its history, though no process is left in it"
    assert got[C] == add(pid_io(run.root / "proc", 5201), (7, 3, 0, 0), (1, 1, 0, 0))
    # 5102 exits, reaped by its parent 5101, and a new process re-uses its pid in the same pod:
    # the old one is carried by its parent, the new one counted from its start.
    before = got[C]
    run.exit(5102)
    run.set_io(5101, add(pid_io(run.root / "proc", 5101), (1, 1, 0, 0)))
    run.start(5102, like=5201, starttime=990500, values=(2, 0, 0, 0), ppid=4000)
    assert run.collect()[C] == add(before, (2, 0, 0, 0))


def test_pod_gone_forgets_its_state(run: Run) -> None:
    run.collect()
    shutil.rmtree(next(run.cgroup.glob("kubepods.slice/kubepods-besteffort.slice")))
    assert B not in run.collect()
    assert B not in run.probe._pods


def test_unreadable_process_is_reported_once(run: Run) -> None:
    for pid in (5001, 5101):
        (run.root / "proc" / str(pid) / "io").unlink()
        (run.root / "proc" / str(pid) / "io").mkdir()  # EISDIR
    got = run.collect()
    assert got[A] == total(run.root / "proc", (5000, 5002)) and got[B] == (0, 0, 0, 0)
    assert [type(e) for e in run.ctx.errors] == [IsADirectoryError]
