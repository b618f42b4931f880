# SPDX-License-Identifier: Apache-2.0
"""Service ClusterIPs from the Kubernetes API: ClusterIP -> (namespace, name), for naming the
peers of the connections tcprtt and tcpconnect see (:mod:`otel_kubeskoop.topology.remotes`).

A socket that connected to a Service keeps the ClusterIP as its peer address (kube-proxy's DNAT
rewrites packets, not the socket), so the ClusterIP names the Service. Services are cluster-wide,
unlike the node's pods (:mod:`otel_kubeskoop.topology.pods`), so the cache lists them all,
``GET /api/v1/services?resourceVersion=0`` (served from the API server's watch cache, not etcd),
every ``resync_seconds``, in one daemon thread (``kubeskoop-services``); a failed list keeps the
last map and is retried after the backoff. A periodic list rather than a watch: ClusterIPs change
rarely, and a Service created since the last list is named at the next one (until then its
address is "external"). The agent starts it when a configured probe names peers; otherwise the
first lookup does, so an agent whose probes never ask (tcprtt and tcpconnect off) never lists
Services. At most ``max_addresses`` addresses are held; the ones past that are
counted in :attr:`ServiceCache.overflow` (per list) and left unnamed.

Without API access (no service account, no kubeconfig) the cache is disabled, says why once, and
names nothing. Readers (:meth:`ServiceCache.get`) are one dict lookup and never block.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from otel_kubeskoop.topology.kubeapi import InFlight, close_client, describe, get, join_reader, load_api_client
from otel_kubeskoop.topology.peers import canonical
from otel_kubeskoop.topology.pods import DEFAULT_RESYNC_BACKOFF, ApiClientFactory

__all__ = ["ServiceCache", "parse_service_list"]

log = logging.getLogger(__name__)

ServiceName = tuple[str, str]  # (namespace, name)
#: addresses a cache holds at most (a ClusterIP per Service, two when dual-stack)
MAX_ADDRESSES = 65536


def parse_service_list(doc: Any, max_addresses: int = MAX_ADDRESSES) -> tuple[dict[str, ServiceName], int]:
    """``{cluster IP: (namespace, name)}`` of a ``ServiceList`` document and how many addresses
    the cap left out. Headless Services (``clusterIP: None``) and ExternalName ones have none."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ValueError("service list response is not a ServiceList (no items)")
    out: dict[str, ServiceName] = {}
    left_out = 0
    for item in doc["items"]:
        meta = item.get("metadata") if isinstance(item, dict) else None
        spec = item.get("spec") if isinstance(item, dict) else None
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            continue
        name, namespace = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or not isinstance(namespace, str):
            continue
        ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
        for text in ips if isinstance(ips, list) else ():
            ip = canonical(text) if isinstance(text, str) else None
            if ip is None or ip in out:
                continue
            if len(out) >= max_addresses:
                left_out += 1
                continue
            out[ip] = (namespace, name)
    return out, left_out


class ServiceCache:
    """ClusterIP -> Service, listed every ``resync_seconds`` while started."""

    def __init__(self, api_client_factory: ApiClientFactory = load_api_client, *,
                 resync_seconds: float = 60.0, request_timeout: float = 30.0,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self._factory = api_client_factory
        self._resync = resync_seconds
        self._timeout = request_timeout
        self._max = max_addresses
        self._by_ip: Mapping[str, ServiceName] = {}
        self.overflow = 0  # addresses the cap left out, summed over lists
        self.lists = 0
        self.state = "starting"
        self.last_error: str | None = None
        self._api: Any = None
        self._stop = threading.Event()
        self._inflight = InFlight(self._stop.is_set)
        self._synced = threading.Event()
        self._started = False
        self._thread: threading.Thread | None = None

    def get(self, ip: str) -> ServiceName | None:
        """The Service whose ClusterIP is ``ip`` (canonical text), as of the last list; the
        first call starts the cache."""
        if not self._started:
            self.start()
        return self._by_ip.get(ip)

    def __len__(self) -> int:
        return len(self._by_ip)

    def status(self) -> dict[str, Any]:
        """``state``: ``idle`` until a probe asks, then ``starting``, ``synced``, ``backoff`` or
        ``disabled``."""
        return {"state": self.state if self._started else "idle", "addresses": len(self._by_ip),
                "lists": self.lists, "last_error": self.last_error, "left_out": self.overflow}

    def settled(self) -> bool:
        """Whether the first list has been tried (listed, failed, or no API): until then an address
        not named yet may be a Service's."""
        return self.state in ("synced", "backoff", "disabled")

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list has been applied; False on timeout or when disabled."""
        return self._synced.wait(timeout) and self.state != "disabled"

    def start(self) -> None:
        """Start the thread, which gets its API client from the factory (importing the client
        takes most of a second: not on the caller's time) or becomes disabled."""
        if self._started or self._stop.is_set():
            return
        self._started = True
        self._thread = threading.Thread(target=self._run, name="kubeskoop-services", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (idempotent): ends a blocked read at once, then joins."""
        self._stop.set()
        self._inflight.interrupt()
        if self._thread is not None:
            if not join_reader(self._thread, timeout):
                return
            self._thread = None
        if self._api is not None:
            close_client(self._api)
            self._api = None

    def _connect(self) -> bool:
        try:
            api, reason = self._factory()
        except Exception as exc:  # a factory failure is "no API", never a crash
            api, reason = None, f"API client setup failed: {type(exc).__name__}: {exc}"
        if api is None:
            self.state, self.last_error = "disabled", reason
            log.warning("service names disabled, remote services are reported as external: %s", reason)
            self._synced.set()  # nothing to wait for
            return False
        self._api = api
        return True

    def _run(self) -> None:
        if not self._connect():
            return
        failures = 0
        while not self._stop.is_set():
            try:
                self._list()
                failures = 0
                wait = self._resync
            except Exception as exc:
                if self._stop.is_set():
                    break
                wait = DEFAULT_RESYNC_BACKOFF[min(failures, len(DEFAULT_RESYNC_BACKOFF) - 1)]
                failures += 1
                self.state, self.last_error = "backoff", describe(exc)
                log.warning("service list failed (%s); retrying in %.1f s", self.last_error, wait)
            self._stop.wait(wait)

    def _list(self) -> None:
        self.lists += 1
        resp = get(self._api, "/api/v1/services", [("resourceVersion", "0")],
                   (min(10.0, self._timeout), self._timeout))
        by_ip, left_out = parse_service_list(json.loads(self._inflight.read_all(resp)), self._max)
        self._by_ip = by_ip  # one reference swap: readers see the old map or the new one
        self.overflow += left_out
        self.state, self.last_error = "synced", None
        self._synced.set()
