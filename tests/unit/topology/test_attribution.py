# SPDX-License-Identifier: Apache-2.0
"""Namespace -> owner, with the real pod cache reading the Kubernetes API stand-in over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otel_kubeskoop.topology.attribution import HOST, Attributor, Owner
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.pods import PodCache
from tests.kube_apiserver import KubeAPIServer, container_id, make_pod

NODE = "node-1"
STATIC_UID = "0f5c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"  # the kubelet's hash of the manifest (32 hex)
MIRROR_UID = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # the mirror pod's own API uid
UNKNOWN_UID = "11111111-2222-4333-8444-555555555555"


def proc_tree(root: Path, pids: dict[int, tuple[int, str]]) -> None:
    """pid -> (netns inode, cgroup path): a fake /proc with ns/net links and cgroup files."""
    for pid, (inode, cgroup) in pids.items():
        (root / str(pid) / "ns").mkdir(parents=True)
        os.symlink(f"net:[{inode}]", root / str(pid) / "ns" / "net")
        (root / str(pid) / "cgroup").write_text(f"0::{cgroup}\n")


@pytest.fixture
def api(tmp_path, monkeypatch):
    with KubeAPIServer() as server:
        monkeypatch.setenv("KUBECONFIG", server.write_kubeconfig(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield server


def test_static_pod_found_by_its_mirror_annotation_and_unknown_uid_kept(api, tmp_path):
    api.add_pod(make_pod("etcd-node-1", "kube-system", MIRROR_UID, NODE, owner=("Node", NODE),
                         annotations={"kubernetes.io/config.mirror": STATIC_UID}))
    proc = tmp_path / "proc"
    proc_tree(proc, {
        1: (4026531840, "/init.scope"),
        100: (4026532100, f"/kubepods/burstable/pod{STATIC_UID}/{container_id(STATIC_UID, 'etcd')}"),
        200: (4026532200, f"/kubepods/besteffort/pod{UNKNOWN_UID}/{container_id(UNKNOWN_UID, 'app')}"),
        300: (4026532300, "/system.slice/sshd.service"),
    })
    cache = PodCache(NODE)
    cache.start()
    try:
        assert cache.wait_synced(15), cache.status()
        with NetnsDiscovery(proc_root=str(proc), netns_dir=str(tmp_path / "none")) as discovery:
            owners = Attributor(cache).resolve(discovery.scan())
    finally:
        cache.stop()
    assert owners[4026531840] is HOST
    static = owners[4026532100]
    assert static.pod_uid == STATIC_UID and static.pod is not None and static.pod.name == "etcd-node-1"
    assert owners[4026532200] == Owner(pod_uid=UNKNOWN_UID, pod=None)  # the API does not know it
    assert owners[4026532300] == Owner()  # not a pod at all
