# SPDX-License-Identifier: Apache-2.0
"""Pod -> processes from cgroup.procs over committed cgroup trees (tests/fixtures/pods/cgroup).

The three trees hold the same pods: A (burstable, containers pause + app), B (a hostNetwork
agent, besteffort) and C (a static pod, guaranteed), plus containerd in system.slice:

- ``v2``: cgroup v2, systemd driver, containerd scopes;
- ``v1``: cgroup v1 (memory and pids hierarchies), cgroupfs driver; v1 lists may repeat an ID;
- ``hybrid``: unified + v1 memory; B is only in memory, and 5002 shows under A in unified and
  under B in memory (the unified hierarchy wins).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.topology.podprocs import (
    Hierarchy,
    find_hierarchies,
    parse_cgroup_procs,
    read_cgroup_procs,
    scan_pod_processes,
    walk_pod_cgroups,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CGROUP = FIXTURES / "pods" / "cgroup"
A = "0c5f7e3a-8d1b-4b8e-9a51-2f6c3d7e8a90"
B = "7a3d2c1b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
C = "8daa50c3a64c9ff60bb9eab7b44b56fd"
PODS = {A: (5000, 5001, 5002), B: (5101,), C: (5201,)}


def test_hierarchies_per_layout(tmp_path) -> None:
    assert find_hierarchies(str(CGROUP / "v2")) == [Hierarchy(str(CGROUP / "v2"), 2)]
    assert find_hierarchies(str(CGROUP / "v1")) == [Hierarchy(str(CGROUP / "v1" / "memory"), 1)]
    assert find_hierarchies(str(CGROUP / "hybrid")) == [
        Hierarchy(str(CGROUP / "hybrid" / "unified"), 2), Hierarchy(str(CGROUP / "hybrid" / "memory"), 1)]
    assert find_hierarchies(str(tmp_path)) == []


def test_v1_falls_back_to_pids_without_memory(tmp_path) -> None:
    shutil.copytree(CGROUP / "v1" / "pids", tmp_path / "pids")
    assert find_hierarchies(str(tmp_path)) == [Hierarchy(str(tmp_path / "pids"), 1)]
    assert scan_pod_processes(find_hierarchies(str(tmp_path))).pods == PODS


@pytest.mark.parametrize("layout", ["v2", "v1", "hybrid"])
def test_scan(layout: str) -> None:
    scan = scan_pod_processes(find_hierarchies(str(CGROUP / layout)))
    assert scan.pods == PODS
    assert not scan.errors


def test_walk_yields_pod_and_container_directories() -> None:
    got = sorted((uid, Path(path).relative_to(CGROUP / "v2").as_posix())
                 for uid, path in walk_pod_cgroups(Hierarchy(str(CGROUP / "v2"), 2)))
    assert [uid for uid, _ in got].count(A) == 3  # the pod slice and its two container scopes
    assert {uid for uid, _ in got} == {A, B, C}
    assert not [p for _, p in got if "system.slice" in p]


def test_parse_cgroup_procs() -> None:
    assert parse_cgroup_procs(b"") == []
    assert parse_cgroup_procs(b"12\n0\n7\n12\n") == [12, 7, 12]  # 0: outside our pid namespace
    with pytest.raises(ParseError, match="not a process ID") as err:
        parse_cgroup_procs((FIXTURES / "proc_malformed/pid/cgroup.procs_garbage").read_bytes(), "x/cgroup.procs")
    assert err.value.line == 2


def test_unreadable_cgroup_is_reported_and_the_rest_scanned(tmp_path) -> None:
    root = tmp_path / "v2"
    shutil.copytree(CGROUP / "v2", root)
    (bad,) = root.glob("kubepods.slice/kubepods-besteffort.slice/*/cri-containerd-*.scope")
    shutil.copyfile(FIXTURES / "proc_malformed" / "pid" / "cgroup.procs_garbage", bad / "cgroup.procs")
    scan = scan_pod_processes(find_hierarchies(str(root)))
    assert scan.pods == {A: PODS[A], B: (), C: PODS[C]}
    assert [type(e) for e in scan.errors] == [ParseError]


def test_removed_cgroup_is_skipped(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_cgroup_procs(str(tmp_path / "gone"))
    assert scan_pod_processes([Hierarchy(str(tmp_path / "gone"), 2)]).pods == {}
