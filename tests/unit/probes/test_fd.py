# SPDX-License-Identifier: Apache-2.0
"""fd over the committed pod trees (tests/fixtures/pods): one series per pod, keyed by pod UID.

Pods (see tests/unit/topology/test_podprocs.py): A = pause 5000 + app 5001 (3 threads) + its
child 5002; B = a hostNetwork agent 5101; C = a static pod 5201. containerd (700) is no pod's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from otel_kubeskoop.probe import ProbeContext, Unavailable
from otel_kubeskoop.probes import fd

PODS = Path(__file__).resolve().parents[2] / "fixtures" / "pods"
A = "0c5f7e3a-8d1b-4b8e-9a51-2f6c3d7e8a90"
B = "7a3d2c1b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
C = "8daa50c3a64c9ff60bb9eab7b44b56fd"


def collect(proc: Path, cgroup: Path) -> tuple[dict, ProbeContext]:
    ctx = ProbeContext("fd", proc_root=str(proc), cgroup_root=str(cgroup))
    probe = fd.SPEC.factory(fd.SPEC.args(), ctx)
    probe.start()
    out = {}
    for s in probe.collect():
        assert s.netns is None and s.attributes == (), "pod scope: keyed by pod UID only"
        key = (s.instrument.name, s.pod_uid)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    probe.stop()
    return out, ctx


def expected(proc: Path, pids: tuple[int, ...]) -> tuple[int, int]:
    """An independent count: every link in each process's fd directory, and the socket ones."""
    links = [os.readlink(p) for pid in pids for p in (proc / str(pid) / "fd").iterdir()]
    return len(links), sum(t.startswith("socket:") for t in links)


@pytest.mark.parametrize("layout", ["v2", "v1", "hybrid"])
def test_per_pod_counts(layout: str) -> None:
    got, ctx = collect(PODS / "proc", PODS / "cgroup" / layout)
    assert not ctx.errors
    for uid, pids in {A: (5000, 5001, 5002), B: (5101,), C: (5201,)}.items():
        openfd, sockets = expected(PODS / "proc", pids)
        assert got[("kubeskoop.fd.openfd", uid)] == openfd
        assert got[("kubeskoop.fd.opensocket", uid)] == sockets
    assert got[("kubeskoop.fd.openfd", A)] == 3 + 8 + 5 and got[("kubeskoop.fd.opensocket", A)] == 3 + 1
    assert len(got) == 6


def test_exited_process_is_skipped(tmp_path) -> None:
    shutil.copytree(PODS, tmp_path / "pods", symlinks=True)
    shutil.rmtree(tmp_path / "pods/proc/5002")
    got, ctx = collect(tmp_path / "pods/proc", tmp_path / "pods/cgroup/v2")
    assert got[("kubeskoop.fd.openfd", A)] == 3 + 8 and not ctx.errors


def test_unreadable_process_is_reported_once(tmp_path) -> None:
    shutil.copytree(PODS, tmp_path / "pods", symlinks=True)
    for pid in (5001, 5101):
        shutil.rmtree(tmp_path / f"pods/proc/{pid}/fd")
        (tmp_path / f"pods/proc/{pid}/fd").write_text("")  # not a directory: ENOTDIR
    got, ctx = collect(tmp_path / "pods/proc", tmp_path / "pods/cgroup/v2")
    assert got[("kubeskoop.fd.openfd", A)] == 3 + 5 and got[("kubeskoop.fd.openfd", B)] == 0
    assert [type(e) for e in ctx.errors] == [NotADirectoryError]


def test_no_cgroup_hierarchy_is_unavailable(tmp_path) -> None:
    ctx = ProbeContext("fd", proc_root=str(PODS / "proc"), cgroup_root=str(tmp_path))
    with pytest.raises(Unavailable, match=str(tmp_path)):
        fd.SPEC.factory(fd.SPEC.args(), ctx).start()


def test_scan_is_shared_within_a_cycle() -> None:
    ctx = ProbeContext("fd", proc_root=str(PODS / "proc"), cgroup_root=str(PODS / "cgroup" / "v2"))
    probe = fd.SPEC.factory(fd.SPEC.args(), ctx)
    probe.start()
    probe.collect()
    scan, made = ctx.cycle.pod_processes(probe.hierarchies)
    assert not made
    scan.pods = {B: (5101,)}  # what the other pod-scope probe left this cycle
    assert {s.pod_uid for s in probe.collect()} == {B}
