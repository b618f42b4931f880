# SPDX-License-Identifier: Apache-2.0
"""PodCache against the Kubernetes API stand-in, through the real ``kubernetes`` client over HTTP.

No root, no cluster: ``tests/kube_apiserver.py`` serves real API paths and JSON on 127.0.0.1, and
the cache reaches it through ``load_api_client()`` and a kubeconfig, as the agent would.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_kubeskoop.topology.kubeapi import load_api_client
from otel_kubeskoop.topology.podinfo import PodInfo, pod_info_from_api
from otel_kubeskoop.topology.pods import PodCache
from tests.kube_apiserver import FIXTURES, KubeAPIServer, container_id, make_job, make_pod, make_replicaset

NODE = "node-a"
FAST = {"resync_backoff": (0.05, 0.1, 0.2), "owner_lookup_timeout": 1.0}


def wait_for(cond: Callable[[], object], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


class Changes:
    """Records on_change calls (uid, info) from the cache thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, PodInfo | None]] = []
        self.lock = threading.Lock()

    def __call__(self, uid: str, info: PodInfo | None) -> None:
        with self.lock:
            self.calls.append((uid, info))

    def of(self, uid: str) -> list[PodInfo | None]:
        with self.lock:
            return [i for u, i in self.calls if u == uid]


@pytest.fixture
def make_cache() -> Iterator[Callable[..., tuple[PodCache, Changes]]]:
    caches: list[PodCache] = []

    def make(node: str = NODE, **kw) -> tuple[PodCache, Changes]:
        changes = Changes()
        cache = PodCache(node, on_change=changes, **{**FAST, **kw})
        caches.append(cache)
        return cache, changes

    yield make
    for c in caches:
        c.stop()


def started(cache: PodCache) -> PodCache:
    cache.start()
    assert cache.wait_synced(10), cache.status()
    return cache


# --------------------------------------------------------------------------------------------------
# list and watch


def test_initial_list_caches_only_pods_of_this_node(api, make_cache):
    api.add_pod(
        make_pod("web-1", "shop", uid(1), NODE, containers=["web", "envoy"], init_containers=["init"])
    )
    api.add_pod(make_pod("web-2", "shop", uid(2), NODE, pod_ip="10.244.1.18"))
    api.add_pod(make_pod("other", "shop", uid(3), "node-b"))
    api.add_pod(make_pod("pending", "shop", uid(4), None))
    cache, changes = make_cache()
    started(cache)

    assert set(cache.pods()) == {uid(1), uid(2)}
    assert api.list_requests == 1
    list_paths = [p for _, p in api.requests if p.startswith("/api/v1/pods?") and "watch=" not in p]
    assert list_paths and "fieldSelector=spec.nodeName%3Dnode-a" in list_paths[0]
    st = cache.status()
    assert st["state"] == "synced" and st["pods"] == 2 and st["lists"] == 1 and st["last_error"] is None
    assert st["resource_version"] == str(api.resource_version)

    p = cache.get(uid(1))
    assert p is not None and (p.name, p.namespace, p.node_name) == ("web-1", "shop", NODE)
    assert p.pod_ip == "10.244.1.17" and p.start_time == "2026-08-20T09:14:02Z" and not p.host_network
    assert p.container_ids == {container_id(uid(1), c) for c in ("web", "envoy", "init")}
    assert cache.by_container_id(container_id(uid(1), "envoy")) == p
    assert cache.by_container_id("containerd://" + container_id(uid(1), "web")) == p
    assert cache.by_container_id("cri-o://" + "0" * 64) is None
    assert cache.get(uid(3)) is None
    assert {u for u, _ in changes.calls} == {uid(1), uid(2)}


def test_watch_added_modified_deleted(api, make_cache):
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    cache, changes = make_cache()
    started(cache)
    assert wait_for(lambda: api.open_watches == 1)

    api.add_pod(make_pod("web-2", "shop", uid(2), NODE, labels={"app": "web"}))
    assert wait_for(lambda: cache.get(uid(2)) is not None, 1.0)
    assert cache.get(uid(2)).labels == {"app": "web"}

    api.update_pod(make_pod("web-2", "shop", uid(2), NODE, labels={"app": "web", "tier": "front"}))
    assert wait_for(lambda: cache.get(uid(2)).labels.get("tier") == "front", 1.0)

    cid = container_id(uid(2), "app")
    assert cache.by_container_id(cid) is not None
    api.delete_pod("shop", "web-2")
    assert wait_for(lambda: cache.get(uid(2)) is None, 1.0)
    assert cache.by_container_id(cid) is None
    assert wait_for(lambda: changes.of(uid(2))[-1:] == [None])
    seen = changes.of(uid(2))
    assert [i.labels.get("tier") for i in seen[:-1]] == [None, "front"]

    # A pod on another node never shows up; one scheduled onto this node does (ADDED by the server).
    api.add_pod(make_pod("elsewhere", "shop", uid(3), "node-b"))
    api.add_pod(make_pod("late", "shop", uid(4), None))
    api.update_pod(make_pod("late", "shop", uid(4), NODE))
    assert wait_for(lambda: cache.get(uid(4)) is not None, 1.0)
    assert cache.get(uid(3)) is None
    assert api.list_requests == 1
    st = cache.status()
    assert st["state"] == "synced" and st["watches"] == 1 and st["events"] >= 4


def test_bookmark_moves_resource_version_and_watch_reopens_after_timeout(api, make_cache):
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    cache, _ = make_cache(watch_timeout_seconds=1)
    started(cache)
    assert wait_for(lambda: api.open_watches == 1)
    api.add_replicaset(make_replicaset("unrelated", "shop"))  # bumps the resourceVersion, no pod event
    api.send_bookmark()
    assert wait_for(lambda: cache.status()["resource_version"] == str(api.resource_version), 1.0)

    assert wait_for(lambda: cache.status()["watches"] >= 2, 3.0)
    api.add_pod(make_pod("web-2", "shop", uid(2), NODE))
    assert wait_for(lambda: cache.get(uid(2)) is not None, 1.5)
    assert api.list_requests == 1  # a watch that timed out is reopened, not re-listed
    watch_paths = [p for _, p in api.requests if "watch=true" in p]
    assert "allowWatchBookmarks=true" in watch_paths[0] and "timeoutSeconds=1" in watch_paths[0]


def test_410_gone_forces_relist_and_diffs_the_cache(api, make_cache):
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    api.add_pod(make_pod("web-2", "shop", uid(2), NODE))
    cache, changes = make_cache()
    started(cache)
    assert wait_for(lambda: api.open_watches == 1)

    # The re-list first fails once (so it comes after the deletion below), then succeeds.
    api.fail_next(1, 500, kind="list")
    api.expire_watches()
    api.delete_pod("shop", "web-2")  # no watch is open to see this: only the re-list can
    api.add_pod(make_pod("web-3", "shop", uid(3), NODE))

    assert wait_for(lambda: api.list_requests == 3 and cache.status()["state"] == "synced", 3.0)
    assert wait_for(lambda: set(cache.pods()) == {uid(1), uid(3)}, 1.0)
    assert changes.of(uid(2))[-1] is None
    st = cache.status()
    assert st["expired"] == 1 and st["lists"] == 3
    assert "500" in st["last_error"]

    # Watching resumed from the new list's resourceVersion.
    assert wait_for(lambda: api.open_watches == 1)
    api.add_pod(make_pod("web-4", "shop", uid(4), NODE))
    assert wait_for(lambda: cache.get(uid(4)) is not None, 1.0)
    assert api.list_requests == 3


def test_500_on_list_backs_off_then_syncs(api, make_cache):
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    api.fail_next(2, 500, kind="list")
    cache, _ = make_cache(resync_backoff=(0.3, 0.6))
    cache.start()
    assert wait_for(lambda: cache.status()["state"] == "backoff", 3.0)
    assert not cache.wait_synced(0.1)
    t0 = time.monotonic()
    assert cache.wait_synced(5)
    # Two failures: waits 0.3 s then 0.6 s (the first of which partly elapsed above).
    assert time.monotonic() - t0 >= 0.5
    assert api.list_requests == 3
    st = cache.status()
    assert st["state"] == "synced" and st["pods"] == 1
    assert "HTTP 500" in st["last_error"] and "injected failure" in st["last_error"]


def test_watch_error_rewatches_from_last_resource_version(api, make_cache):
    cache, _ = make_cache()
    started(cache)
    assert wait_for(lambda: api.open_watches == 1)
    api.fail_next(1, 503, kind="watch")
    api.expire_watches()  # ends the open watch; the re-list's watch then gets the 503
    assert wait_for(lambda: api.watch_requests >= 3 and cache.status()["state"] == "synced", 3.0)
    assert api.list_requests == 2  # the 503 on the watch did not cause another list
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    assert wait_for(lambda: cache.get(uid(1)) is not None, 1.0)


# --------------------------------------------------------------------------------------------------
# owners


def test_owner_resolution(api, make_cache):
    api.add_replicaset(make_replicaset("checkout-7d9c6b8f5d", "shop", deployment="checkout"))
    api.add_replicaset(make_replicaset("bare-rs", "shop"))
    api.add_job(make_job("nightly-report-29774160", "batch", cronjob="nightly-report"))
    api.add_job(make_job("migrate", "batch"))
    pods = {
        1: ("checkout-7d9c6b8f5d-a", "shop", ("ReplicaSet", "checkout-7d9c6b8f5d")),
        2: ("checkout-7d9c6b8f5d-b", "shop", ("ReplicaSet", "checkout-7d9c6b8f5d")),
        3: ("bare-rs-x", "shop", ("ReplicaSet", "bare-rs")),
        4: ("gone-rs-x", "shop", ("ReplicaSet", "gone-rs")),  # ReplicaSet absent: 404
        5: ("nightly-report-29774160-q", "batch", ("Job", "nightly-report-29774160")),
        6: ("migrate-z", "batch", ("Job", "migrate")),
        7: ("db-0", "shop", ("StatefulSet", "db")),
        8: ("kube-proxy-abc", "kube-system", ("DaemonSet", "kube-proxy")),
        9: ("etcd-node-a", "kube-system", ("Node", NODE)),
        10: ("debug", "shop", None),
    }
    for n, (name, ns, owner) in pods.items():
        api.add_pod(make_pod(name, ns, uid(n), NODE, owner=owner))
    cache, _ = make_cache()
    started(cache)

    def wl(n: int) -> tuple:
        p = cache.get(uid(n))
        return (p.workload_kind, p.workload_name)

    assert wl(1) == wl(2) == ("Deployment", "checkout")
    assert cache.get(uid(1)).workload_uid and cache.get(uid(1)).owner_kind == "ReplicaSet"
    assert wl(3) == ("ReplicaSet", "bare-rs")
    assert wl(4) == ("ReplicaSet", "gone-rs")
    assert wl(5) == ("CronJob", "nightly-report")
    assert wl(6) == ("Job", "migrate")
    assert wl(7) == ("StatefulSet", "db")
    assert wl(8) == ("DaemonSet", "kube-proxy")
    assert wl(9) == ("Node", NODE)
    assert wl(10) == (None, None) and cache.get(uid(10)).owner_kind is None
    # One GET per distinct ReplicaSet/Job (the two checkout pods share one), none for other kinds.
    assert api.get_requests == 5
    assert cache.status()["owner_lookups"] == 5

    # A MODIFIED pod keeps its resolved workload without another GET; a new pod of a known RS too.
    api.update_pod(
        make_pod("checkout-7d9c6b8f5d-a", "shop", uid(1), NODE, owner=pods[1][2], labels={"v": "2"})
    )
    api.add_pod(make_pod("checkout-7d9c6b8f5d-c", "shop", uid(11), NODE, owner=pods[1][2]))
    assert wait_for(lambda: cache.get(uid(11)) is not None and cache.get(uid(1)).labels.get("v") == "2", 1.0)
    assert wl(1) == wl(11) == ("Deployment", "checkout")
    assert api.get_requests == 5


def test_owner_lookup_forbidden_falls_back_to_direct_owner(api, make_cache, caplog):
    api.forbid("replicasets")
    api.add_replicaset(make_replicaset("web-6d4b", "shop", deployment="web"))
    api.add_pod(make_pod("web-6d4b-1", "shop", uid(1), NODE, owner=("ReplicaSet", "web-6d4b")))
    api.add_pod(make_pod("web-6d4b-2", "shop", uid(2), NODE, owner=("ReplicaSet", "web-6d4b")))
    with caplog.at_level(logging.WARNING, logger="otel_kubeskoop.topology.pods"):
        cache, _ = make_cache()
        started(cache)
    assert (cache.get(uid(1)).workload_kind, cache.get(uid(1)).workload_name) == ("ReplicaSet", "web-6d4b")
    assert api.get_requests == 1  # the 403 is remembered
    assert sum("may not read ReplicaSets" in r.getMessage() for r in caplog.records) == 1


def test_slow_owner_lookups_do_not_stall_the_cache(api, make_cache):
    for n in range(1, 4):
        api.add_replicaset(make_replicaset(f"rs-{n}", "shop", deployment=f"dep-{n}"))
        api.add_pod(make_pod(f"rs-{n}-x", "shop", uid(n), NODE, owner=("ReplicaSet", f"rs-{n}")))
    api.get_delay = 1.0
    cache, changes = make_cache(owner_lookup_timeout=0.2, owner_retry_seconds=0.3, watch_timeout_seconds=1)
    started(cache)  # warm the client's imports so the timing below is the lookups'
    cache.stop()
    cache, changes = make_cache(owner_lookup_timeout=0.2, owner_retry_seconds=0.3, watch_timeout_seconds=1)
    t0 = time.monotonic()
    started(cache)
    # One timed-out lookup (0.2 s) pauses the rest; three serial timeouts would take 0.6 s or more.
    assert time.monotonic() - t0 < 0.55
    assert {p.workload_kind for p in cache.pods().values()} == {"ReplicaSet"}

    api.get_delay = 0.0
    # Re-resolved before the watch is reopened (every 1 s here), and reported through on_change.
    assert wait_for(lambda: {p.workload_kind for p in cache.pods().values()} == {"Deployment"}, 4.0)
    assert changes.of(uid(1))[-1].workload_name == "dep-1"


# --------------------------------------------------------------------------------------------------
# malformed objects, stop, no API


def test_malformed_pod_objects_are_skipped_and_counted(api, make_cache, caplog):
    bad = make_pod("no-uid", "shop", uid(9), NODE)
    del bad["metadata"]["uid"]
    api.add_pod(bad)
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    with caplog.at_level(logging.WARNING, logger="otel_kubeskoop.topology.pods"):
        cache, _ = make_cache()
        started(cache)
        assert set(cache.pods()) == {uid(1)}
        assert cache.status()["skipped_objects"] == 1
        assert wait_for(lambda: api.open_watches == 1)

        worse = make_pod("bad-labels", "shop", uid(8), NODE)
        worse["metadata"]["labels"] = ["not", "a", "map"]
        api.add_pod(worse)
        api.add_pod(make_pod("web-2", "shop", uid(2), NODE))
        assert wait_for(lambda: cache.get(uid(2)) is not None, 1.0)
    assert cache.status()["skipped_objects"] == 2
    assert cache.get(uid(8)) is None and cache.status()["state"] == "synced"
    messages = [r.getMessage() for r in caplog.records]
    assert any("missing metadata.uid" in m for m in messages)
    assert any("malformed metadata.labels" in m for m in messages)


def test_stop_returns_promptly_mid_watch(api, make_cache):
    api.add_pod(make_pod("web-1", "shop", uid(1), NODE))
    cache, _ = make_cache(watch_timeout_seconds=300)
    started(cache)
    assert wait_for(lambda: api.open_watches == 1)
    time.sleep(0.2)  # the thread is now blocked reading the watch stream
    thread = cache._thread
    t0 = time.monotonic()
    cache.stop()
    assert time.monotonic() - t0 < 0.5
    assert thread is not None and not thread.is_alive()
    assert cache.status()["state"] == "stopped"
    assert wait_for(lambda: api.open_watches == 0, 1.0)  # the server saw the connection close
    cache.stop()  # idempotent
    assert cache.get(uid(1)) is not None  # the last known pods stay readable


def test_stop_during_backoff_is_prompt(api, make_cache):
    api.fail_next(1, 500, kind="list")
    cache, _ = make_cache(resync_backoff=(30,))
    cache.start()
    assert wait_for(lambda: cache.status()["state"] == "backoff", 3.0)
    t0 = time.monotonic()
    cache.stop()
    assert time.monotonic() - t0 < 0.5


def test_no_api_access_means_disabled_with_reason(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    client, reason = load_api_client()
    assert client is None
    assert "KUBERNETES_SERVICE_HOST unset" in reason and str(tmp_path / ".kube" / "config") in reason

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing.yaml"))
    client, reason = load_api_client()
    assert client is None and "missing.yaml not found" in reason

    with caplog.at_level(logging.WARNING, logger="otel_kubeskoop.topology.pods"):
        cache = PodCache(NODE)
        cache.start()
        cache.start()
        assert cache._thread is None
        assert not cache.wait_synced(0.05)
        st = cache.status()
        assert st["state"] == "disabled" and st["last_error"] == reason and st["pods"] == 0
        assert cache.get(uid(1)) is None and cache.pods() == {} and cache.by_container_id("0" * 64) is None
        cache.stop()
        assert cache.status()["state"] == "disabled"
    assert sum("pod metadata disabled" in r.getMessage() for r in caplog.records) == 1

    d = PodCache.disabled(NODE, "--no-kubernetes")
    assert d.status()["state"] == "disabled" and d.status()["last_error"] == "--no-kubernetes"
    d.start()
    assert d.status()["state"] == "disabled" and d._thread is None
    blank = PodCache("", lambda: pytest.fail("factory must not be called without a node name"))
    blank.start()
    assert blank.status()["state"] == "disabled" and "no node name" in blank.status()["last_error"]


def test_in_cluster_without_service_account_falls_back_to_kubeconfig(api, monkeypatch):
    if os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
        pytest.skip("running inside a pod: the in-cluster config would load")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    client, reason = load_api_client()
    assert client is not None and reason.startswith("kubeconfig ") and api.base_url in reason
    from kubernetes.client import VersionApi

    assert VersionApi(client).get_code().git_version == "v1.33.1"
    client.close()


def test_factory_failure_disables():
    def boom():
        raise RuntimeError("no certs")

    cache = PodCache(NODE, boom)
    cache.start()
    assert cache.status()["state"] == "disabled" and "RuntimeError: no certs" in cache.status()["last_error"]


# --------------------------------------------------------------------------------------------------
# pod_info_from_api


def test_pod_info_from_fixture_json():
    obj = json.loads((FIXTURES / "pod.json").read_text())
    p = pod_info_from_api(obj)
    assert (p.uid, p.name, p.namespace, p.node_name) == (
        "5f0c7f3e-6c1a-4b7e-9d2a-0e8f1b2c3d4e",
        "checkout-7d9c6b8f5d-x2vqp",
        "shop",
        "node-a",
    )
    assert (p.owner_kind, p.owner_name, p.owner_uid) == (
        "ReplicaSet",
        "checkout-7d9c6b8f5d",
        "0b6f1e9a-2c4d-4e5f-8a7b-9c0d1e2f3a4b",
    )
    assert (p.workload_kind, p.workload_name) == ("ReplicaSet", "checkout-7d9c6b8f5d")  # unresolved
    assert p.container_ids == {"9f2d1c0b8a7e6d5c4b3a29180f7e6d5c4b3a2918f0e1d2c3b4a5968778695a4b"}
    assert (p.pod_ip, p.start_time, p.resource_version) == ("10.244.1.17", "2026-08-20T09:14:02Z", "48213")
    assert p.labels["app.kubernetes.io/name"] == "checkout"
    with pytest.raises(TypeError):
        p.labels["x"] = "y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]

    w = pod_info_from_api(obj, workload=("Deployment", "checkout", "c3a1"))
    assert (w.workload_kind, w.workload_name, w.workload_uid) == ("Deployment", "checkout", "c3a1")


def test_pod_info_host_network_pending_containers_and_owner_choice():
    obj = make_pod(
        "kube-proxy-x",
        "kube-system",
        uid(1),
        NODE,
        host_network=True,
        containers=["kube-proxy", {"name": "starting", "id": ""}],
        start_time=None,
        owner=("DaemonSet", "kube-proxy"),
    )
    obj["metadata"]["ownerReferences"].insert(
        0, {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-controller", "uid": "x"}
    )
    p = pod_info_from_api(obj)
    assert p.host_network and p.pod_ip == "172.18.0.3" and p.start_time is None
    assert p.container_ids == {container_id(uid(1), "kube-proxy")}
    assert p.owner_kind == "DaemonSet"  # the controller reference wins over the first one

    bare = pod_info_from_api({"metadata": {"uid": "u", "name": "n", "namespace": "ns"}})
    assert bare.owner_kind is None and bare.workload_kind is None and bare.node_name is None
    assert bare.labels == {} and bare.container_ids == frozenset() and bare.resource_version == ""


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["metadata"].pop("uid"), "missing metadata.uid"),
        (
            lambda o: (o["metadata"].pop("name"), o["metadata"].update(namespace="")),
            "metadata.name, metadata.namespace",
        ),
        (lambda o: o.pop("metadata"), "missing metadata"),
        (lambda o: o["metadata"].update(annotations={"a": 1}), "malformed metadata.annotations"),
        (lambda o: o.update(spec=[]), "malformed spec"),
    ],
)
def test_pod_info_validation_names_what_is_wrong(mutate, message):
    obj = copy.deepcopy(make_pod("p", "ns", uid(1), NODE))
    mutate(obj)
    with pytest.raises(ValueError, match=message):
        pod_info_from_api(obj)
    with pytest.raises(ValueError, match="not a JSON object"):
        pod_info_from_api([])  # type: ignore[arg-type]
