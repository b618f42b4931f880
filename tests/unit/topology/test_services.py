# SPDX-License-Identifier: Apache-2.0
"""The Service cache: ClusterIP -> Service from a real ServiceList, listed through the real
client against the API stand-in, re-listed on its period, capped, and disabled without API."""

from __future__ import annotations

import json
import time
import pytest

from otel_kubeskoop.topology.services import ServiceCache, parse_service_list
from tests.kube_apiserver import FIXTURES, KubeAPIServer, make_service


def test_cluster_ips_of_a_service_list_dual_stack_headless_and_capped() -> None:
    fixture = json.loads((FIXTURES / "service.json").read_text())
    doc = {"kind": "ServiceList", "items": [
        fixture,
        make_service("dual", "shop", ("10.96.0.20", "FD00:10:96::20")),
        make_service("headless", "shop", ()),
        {"metadata": {"name": "broken"}},
        "not an object",
    ]}
    got, left_out = parse_service_list(doc)
    assert got == {"10.96.41.7": ("shop", "checkout"), "10.96.0.20": ("shop", "dual"),
                   "fd00:10:96::20": ("shop", "dual")}
    assert left_out == 0
    capped, left_out = parse_service_list(doc, max_addresses=2)
    assert len(capped) == 2 and left_out == 1
    with pytest.raises(ValueError, match="not a ServiceList"):
        parse_service_list({"kind": "Status"})


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_lists_through_the_api_on_first_lookup_and_again_each_period(api: KubeAPIServer) -> None:
    api.add_service(make_service("checkout", "shop", ("10.96.41.7",)))
    cache = ServiceCache(resync_seconds=0.2)
    try:
        assert api.list_requests == 0  # nothing listed before a probe asks
        # The first lookup starts the cache; its thread may have listed before the lookup reads.
        assert cache.get("10.96.41.7") in (None, ("shop", "checkout"))
        assert cache.wait_synced(10)
        assert cache.get("10.96.41.7") == ("shop", "checkout")
        api.add_service(make_service("cart", "shop", ("10.96.41.8",)))
        wait_for(lambda: cache.get("10.96.41.8") == ("shop", "cart"))
        assert cache.state == "synced" and api.list_requests >= 2
        status = cache.status()
        assert (status["state"], status["addresses"], status["left_out"]) == ("synced", 2, 0)
        assert ("GET", "/api/v1/services?resourceVersion=0") in api.requests
    finally:
        cache.stop()
    assert cache._thread is None


def test_a_failed_list_keeps_the_last_map(api: KubeAPIServer) -> None:
    api.add_service(make_service("checkout", "shop", ("10.96.41.7",)))
    cache = ServiceCache(resync_seconds=0.1)
    try:
        cache.start()
        assert cache.wait_synced(10)
        api.fail_next(50, 500, kind="list")
        wait_for(lambda: cache.state == "backoff")
        assert cache.get("10.96.41.7") == ("shop", "checkout") and "500" in cache.last_error
    finally:
        cache.stop()


def test_without_api_access_it_is_disabled_and_names_nothing() -> None:
    cache = ServiceCache(lambda: (None, "not in a cluster"))
    cache.start()
    assert cache.wait_synced(5) is False
    assert (cache.state, cache.last_error) == ("disabled", "not in a cluster")
    assert cache.get("10.96.41.7") is None
    cache.stop()
