# SPDX-License-Identifier: Apache-2.0
"""Pod metadata from the Kubernetes API: a cache of the pods on this node, keyed by pod UID.

No OpenTelemetry imports. The ``kubernetes`` client is imported lazily (on :meth:`PodCache.start`
and in :func:`load_api_client`): importing its typed API modules costs about 0.7 s and ~29 MB of RSS,
which an agent without API access should not pay.

How the cache stays current (the client-go reflector pattern, DESIGN section 4 step 3):

1. **List** ``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>`` through
   ``CoreV1Api.list_pod_for_all_namespaces(..., _preload_content=False)`` and parse the body with
   :func:`json.loads`. The client's model deserialisation is not used: for 110 pods (640 kB) it took
   36 ms against 4.4 ms for ``json.loads`` (median, kubernetes 37.0.2, CPython 3.11), and we only
   need a dozen fields of the raw dict.
2. **Watch** from the list's ``metadata.resourceVersion`` with ``watch=true``,
   ``allowWatchBookmarks=true`` and ``timeoutSeconds``, reading the chunked stream line by line from
   the raw urllib3 response. ``kubernetes.watch.Watch`` is not used: it deserialises every event into
   models, its ``deserialize=False`` mode raises ``KeyError('raw_object')`` on an ``ERROR`` event
   (kubernetes 37.0.2), and without ``timeout_seconds`` it retries a 410 once with the same stale
   resourceVersion. Holding the response ourselves also lets :meth:`PodCache.stop` shut its socket
   down, which ends a blocked read at once.
3. ``ADDED``/``MODIFIED``/``DELETED`` update a dict keyed by UID; ``BOOKMARK`` only moves the
   resourceVersion. When the server ends the watch (``timeoutSeconds``), it is reopened from the last
   resourceVersion.
4. **410 Gone** (an ``ERROR`` event whose ``Status.code`` is 410, reason ``Expired``; or a 410 answer
   to the watch request itself) means the resourceVersion is too old: list again at once and diff
   against the cache. Any other failure backs off (``resync_backoff``, capped) and retries: the list
   if the list failed, else the watch from the last resourceVersion.

The owner workload is resolved the way the semantic conventions want ``k8s.deployment.name`` and
``k8s.cronjob.name``: a pod owned by a ReplicaSet gets the ReplicaSet's Deployment owner (``GET
/apis/apps/v1/namespaces/<ns>/replicasets/<name>``), a pod owned by a Job gets the Job's CronJob
owner (``GET /apis/batch/v1/...``). Lookups are cached (LRU by kind/namespace/name/uid); 403 and 404
fall back to the direct owner for good; a timeout or server error falls back for now, pauses all
lookups for ``owner_retry_seconds`` (so an unresponsive API cannot stall the watch loop once per
pod), and the pod is re-resolved when the watch is next reopened.

Readers (:meth:`PodCache.get`, :meth:`PodCache.pods`, :meth:`PodCache.by_container_id`) never block
on the network: they are dict lookups under a lock held only for the lookup.

Without API access (no service account, no kubeconfig) the cache is *disabled*: it says why once in
the log and in :meth:`PodCache.status`, and every lookup returns nothing.

See https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes and
https://github.com/open-telemetry/semantic-conventions/blob/main/docs/non-normative/k8s-attributes.md.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "DEFAULT_RESYNC_BACKOFF",
    "PodCache",
    "PodInfo",
    "load_api_client",
    "pod_info_from_api",
    "render_additional_labels",
    "service_attributes",
]

log = logging.getLogger(__name__)

DEFAULT_RESYNC_BACKOFF: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
"""Seconds to wait after the 1st, 2nd, ... consecutive failure; the last value repeats."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
_CONTAINER_ID = re.compile(r"(?:[a-z0-9][a-z0-9.+-]*://)?([0-9a-f]{64})")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


# --------------------------------------------------------------------------------------------------
# PodInfo


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the agent keeps of one pod. Built from the raw API JSON by :func:`pod_info_from_api`."""

    uid: str
    name: str
    namespace: str
    node_name: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    host_network: bool
    pod_ip: str | None
    start_time: str | None
    """``status.startTime``, RFC 3339 as the API gives it."""
    owner_kind: str | None
    """The controller owner reference (else the first one): ``ReplicaSet``, ``Job``, ``DaemonSet``..."""
    owner_name: str | None
    owner_uid: str | None
    workload_kind: str | None
    """The top owner: ``Deployment`` for a ReplicaSet owned by one, ``CronJob`` for a Job owned by one,
    else the direct owner kind (``None`` for a bare pod)."""
    workload_name: str | None
    workload_uid: str | None
    container_ids: frozenset[str]
    """64-hex ids of every container with a status (init, app, ephemeral), runtime prefix stripped."""
    resource_version: str


def _str_map(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"pod object has a malformed {where} (want a string-to-string map)")
    return MappingProxyType(dict(value)) if value else _EMPTY


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ValueError(f"pod object has a malformed {where} (want an object)")
    return value


def _controller_ref(refs: Any) -> Mapping[str, Any] | None:
    """The owner reference with ``controller: true``, else the first well-formed one."""
    if not isinstance(refs, list):
        return None
    good = [r for r in refs if isinstance(r, Mapping) and isinstance(r.get("kind"), str) and r.get("name")]
    for r in good:
        if r.get("controller") is True:
            return r
    return good[0] if good else None


def pod_info_from_api(
    obj: Mapping[str, Any], *, workload: tuple[str, str, str | None] | None = None
) -> PodInfo:
    """Build a :class:`PodInfo` from a raw Pod JSON object (as listed or watched).

    ``workload`` is the resolved top owner ``(kind, name, uid)``; without it the direct owner is used.
    Raises :class:`ValueError` naming what is missing or malformed (``metadata.uid``, ``metadata.name``,
    ``metadata.namespace`` are required; labels and annotations must be string maps).
    """
    if not isinstance(obj, Mapping):
        raise ValueError("pod object is not a JSON object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ValueError("pod object is missing metadata")
    missing = [f"metadata.{k}" for k in ("uid", "name", "namespace") if not _nonempty_str(meta.get(k))]
    if missing:
        raise ValueError(f"pod object is missing {', '.join(missing)}")
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")

    owner = _controller_ref(meta.get("ownerReferences"))
    owner_kind = owner["kind"] if owner else None
    owner_name = str(owner["name"]) if owner else None
    owner_uid = owner.get("uid") if owner and _nonempty_str(owner.get("uid")) else None
    top: tuple[str | None, str | None, str | None] = workload or (owner_kind, owner_name, owner_uid)

    cids: set[str] = set()
    for key in _STATUS_LISTS:
        statuses = status.get(key)
        if not isinstance(statuses, list):
            continue
        for st in statuses:
            cid = st.get("containerID") if isinstance(st, Mapping) else None
            if isinstance(cid, str) and (m := _CONTAINER_ID.fullmatch(cid)):
                cids.add(m.group(1))

    node = spec.get("nodeName")
    pod_ip = status.get("podIP")
    start = status.get("startTime")
    rv = meta.get("resourceVersion")
    return PodInfo(
        uid=meta["uid"],
        name=meta["name"],
        namespace=meta["namespace"],
        node_name=node if _nonempty_str(node) else None,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        annotations=_str_map(meta.get("annotations"), "metadata.annotations"),
        host_network=spec.get("hostNetwork") is True,
        pod_ip=pod_ip if _nonempty_str(pod_ip) else None,
        start_time=start if _nonempty_str(start) else None,
        owner_kind=owner_kind,
        owner_name=owner_name,
        owner_uid=owner_uid,
        workload_kind=top[0],
        workload_name=top[1],
        workload_uid=top[2],
        container_ids=frozenset(cids),
        resource_version=rv if isinstance(rv, str) else "",
    )


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _normalise_container_id(cid: str) -> str | None:
    m = _CONTAINER_ID.fullmatch(cid.strip().lower())
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------------
# service.* and additionalLabels

ANNOTATION_PREFIX = "resource.opentelemetry.io/"
_SERVICE_NAME_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "CronJob", "Job")


def service_attributes(pod: PodInfo, *, use_labels: bool = False) -> dict[str, str]:
    """``service.namespace``, ``service.name``, ``service.instance.id`` for a pod-level resource.

    Follows semantic conventions ``docs/non-normative/k8s-attributes.md``, first value found:

    - ``service.namespace``: annotation ``resource.opentelemetry.io/service.namespace``, else the
      Kubernetes namespace;
    - ``service.name``: annotation ``resource.opentelemetry.io/service.name``; then, only with
      ``use_labels`` (the conventions ask for well-known labels to be opt-in), labels
      ``app.kubernetes.io/instance`` and ``app.kubernetes.io/name``; then the name of the top
      workload if it is a Deployment, ReplicaSet, StatefulSet, DaemonSet, CronJob or Job; then the
      pod name (there is no container at pod level);
    - ``service.instance.id``: annotation ``resource.opentelemetry.io/service.instance.id``, else
      ``<namespace>.<pod name>``.

    Empty annotation or label values count as absent.
    """
    ann, labels = pod.annotations, pod.labels
    namespace = ann.get(ANNOTATION_PREFIX + "service.namespace") or pod.namespace
    name = ann.get(ANNOTATION_PREFIX + "service.name")
    if not name and use_labels:
        name = labels.get("app.kubernetes.io/instance") or labels.get("app.kubernetes.io/name")
    if not name and pod.workload_kind in _SERVICE_NAME_KINDS and pod.workload_name:
        name = pod.workload_name
    if not name:
        name = pod.name
    instance = ann.get(ANNOTATION_PREFIX + "service.instance.id") or f"{pod.namespace}.{pod.name}"
    return {"service.namespace": namespace, "service.name": name, "service.instance.id": instance}


# Upstream: `\${labels:(.*?)}`, a lazy match up to the first `}`.
_LABEL_EXPR = re.compile(r"\$\{labels:(.*?)\}")


def render_additional_labels(templates: Sequence[tuple[str, str]], pod: PodInfo | None) -> dict[str, str]:
    """Render KubeSkoop ``metrics.additionalLabels`` for one pod: ``{label name: value}``.

    Each template is ``(name, value_expr)``, the config's ``name=valueExpr`` already split (config
    keeps everything after the first ``=``; upstream ``InitAdditionalLabels`` splits on every ``=``
    and keeps only the second field, so ``n=a=b`` is ``a`` upstream and ``a=b`` here). Names and
    expressions are stripped of surrounding whitespace as upstream does. Every
    ``${labels:<podLabelKey>}`` in the expression becomes that pod label's value, or ``""`` when the
    pod has no such label; the text around it is kept (``prefix_${labels:l1}_suffix``). With no pod
    (the host namespace, whose upstream entity has no labels) every placeholder renders ``""``.

    Matches alibaba/kubeskoop ``pkg/exporter/probe/legacy.go`` ``BuildAdditionalLabelsValues`` and
    its table test ``TestBuildAdditionalLabelsValues1`` in ``legacy_test.go`` (commit 765e0c4).
    """
    labels = pod.labels if pod is not None else _EMPTY
    out: dict[str, str] = {}
    for name, expr in templates:
        out[name.strip()] = _LABEL_EXPR.sub(lambda m: labels.get(m.group(1), ""), expr.strip())
    return out


# --------------------------------------------------------------------------------------------------
# API client


def load_api_client() -> tuple[ApiClient | None, str]:
    """An API client and a one-line description of where it came from, or ``(None, reason)``.

    In order: the in-cluster service account when ``KUBERNETES_SERVICE_HOST`` is set
    (``kubernetes.config.load_incluster_config``); else the kubeconfig named by ``KUBECONFIG``
    (``:``-separated list allowed) or ``~/.kube/config`` if it exists. The client is tuned for a
    long-running agent: TCP keepalive on (watches through idle-dropping proxies), and read errors not
    retried by urllib3 (its default ``Retry(3)`` retries a timed-out GET three times, so a 2 s
    timeout would stall for 8 s).
    """
    from kubernetes import client, config

    reasons: list[str] = []
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as exc:
            reasons.append(f"in-cluster config failed: {exc}")
        else:
            return _api_client(cfg), f"in-cluster service account ({cfg.host})"

    env = os.environ.get("KUBECONFIG", "")
    if env:
        paths = [p for p in env.split(os.pathsep) if p]
        source = f"KUBECONFIG={env}"
    else:
        paths = [str(Path.home() / ".kube" / "config")]
        source = paths[0]
    existing = [p for p in paths if os.path.isfile(p)]
    if not existing:
        reasons.append(f"no kubeconfig ({source} not found)")
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            reasons.insert(0, "not in a cluster (KUBERNETES_SERVICE_HOST unset)")
        return None, "; ".join(reasons)
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=os.pathsep.join(existing), client_configuration=cfg)
    except Exception as exc:  # ConfigException, YAML errors, missing keys: all mean "no client"
        reasons.append(f"kubeconfig {os.pathsep.join(existing)} unusable: {exc}")
        return None, "; ".join(reasons)
    return _api_client(cfg), f"kubeconfig {os.pathsep.join(existing)} ({cfg.host})"


def _api_client(cfg: Any) -> ApiClient:
    import urllib3
    from kubernetes import client

    from otel_kubeskoop import __version__

    cfg.keep_alive = True
    cfg.retries = urllib3.Retry(total=3, connect=3, read=0, status=0, redirect=3)
    api = client.ApiClient(cfg)
    api.user_agent = f"otel-kubeskoop/{__version__}"
    return api


# --------------------------------------------------------------------------------------------------
# PodCache


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class _WatchError(Exception):
    """An ERROR event other than 410 on the watch stream."""


_MISS = object()

ApiClientFactory = Callable[[], "tuple[ApiClient | None, str]"]
OnChange = Callable[[str, "PodInfo | None"], None]


class PodCache:
    """The pods of one node, kept current by list + watch in one daemon thread (``kubeskoop-pods``).

    ``api_client_factory`` returns ``(client | None, reason)`` like :func:`load_api_client` (the
    default); it is called once, by :meth:`start`. ``on_change(uid, info)`` is called from the cache
    thread after a pod appears or changes (``info``) or is deleted (``None``); it must be quick and is
    never called with the lock held. ``resync_backoff`` is the wait after each consecutive failure
    (last value repeats). ``watch_timeout_seconds`` is the server-side ``timeoutSeconds`` of one watch
    request. ``request_timeout`` bounds list requests (connect and read), ``owner_lookup_timeout``
    each ReplicaSet/Job GET; after an owner lookup times out or fails with a server error, lookups
    pause for ``owner_retry_seconds``.
    """

    def __init__(
        self,
        node_name: str,
        api_client_factory: ApiClientFactory = load_api_client,
        *,
        resync_backoff: Sequence[float] = DEFAULT_RESYNC_BACKOFF,
        watch_timeout_seconds: int = 300,
        on_change: OnChange | None = None,
        request_timeout: float = 30.0,
        owner_lookup_timeout: float = 2.0,
        owner_retry_seconds: float = 30.0,
        owner_cache_size: int = 4096,
    ) -> None:
        if not resync_backoff:
            raise ValueError("resync_backoff must have at least one value")
        self.node_name = node_name
        self._factory = api_client_factory
        self._backoff = tuple(float(b) for b in resync_backoff)
        self._watch_timeout = max(1, int(watch_timeout_seconds))
        self._on_change = on_change
        self._request_timeout = request_timeout
        self._owner_timeout = owner_lookup_timeout
        self._owner_retry = owner_retry_seconds
        self._owner_cache_size = owner_cache_size

        self._lock = threading.Lock()  # guards _pods, _by_cid, _resp and the status fields
        self._pods: dict[str, PodInfo] = {}
        self._by_cid: dict[str, str] = {}
        self._resp: Any = None  # the urllib3 response being read, so stop() can shut it down
        self._state = "starting"
        self._last_error: str | None = None
        self._lists = 0
        self._watches = 0
        self._expired = 0
        self._events = 0
        self._skipped = 0
        self._owner_lookups = 0
        self._rv: str | None = None

        self._owners: collections.OrderedDict[tuple[str, str, str, str | None], tuple[Any, float]] = (
            collections.OrderedDict()
        )
        self._owners_blocked_until = 0.0
        self._unresolved: set[str] = set()  # uids whose owner lookup failed transiently
        self._forbidden_logged: set[str] = set()

        self._api: Any = None
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @classmethod
    def disabled(cls, node_name: str, reason: str) -> PodCache:
        """A cache that never contacts an API server; :meth:`status` reports ``reason`` at once."""
        cache = cls(node_name, lambda: (None, reason))
        cache._state, cache._last_error = "disabled", reason
        return cache

    # ---- lookups (never block on I/O) ------------------------------------------------------------

    def get(self, uid: str) -> PodInfo | None:
        with self._lock:
            return self._pods.get(uid)

    def pods(self) -> dict[str, PodInfo]:
        """A snapshot copy ``{uid: PodInfo}``."""
        with self._lock:
            return dict(self._pods)

    def by_container_id(self, cid: str) -> PodInfo | None:
        """The pod with this container; ``cid`` may carry a runtime prefix (``containerd://``)."""
        key = _normalise_container_id(cid)
        if key is None:
            return None
        with self._lock:
            uid = self._by_cid.get(key)
            return self._pods.get(uid) if uid is not None else None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state,
                "node": self.node_name,
                "pods": len(self._pods),
                "last_error": self._last_error,
                "lists": self._lists,
                "watches": self._watches,
                "expired": self._expired,
                "events": self._events,
                "skipped_objects": self._skipped,
                "owner_lookups": self._owner_lookups,
                "resource_version": self._rv,
            }

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list has been applied; ``False`` on timeout or when disabled."""
        if self._state == "disabled":
            return False
        return self._synced.wait(timeout)

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Get an API client from the factory and start the cache thread (or become disabled)."""
        if self._started:
            return
        self._started = True
        reason = "no node name (set NODE_NAME or nodeName in the config)"
        api = None
        if self.node_name:
            try:
                api, reason = self._factory()
            except Exception as exc:  # a factory failure is "no API", never a crash
                api, reason = None, f"API client setup failed: {type(exc).__name__}: {exc}"
        if api is None:
            with self._lock:
                self._state = "disabled"
                self._last_error = reason
            log.warning("pod metadata disabled, namespaces are reported without pods: %s", reason)
            return
        log.info("pod cache for node %s using %s", self.node_name, reason)
        self._api = api
        self._thread = threading.Thread(target=self._run, name="kubeskoop-pods", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (idempotent): ends a blocked watch read at once, then joins."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        _shutdown(resp)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("pod cache thread did not stop within %.1f s", timeout)
            else:
                self._thread = None
        with self._lock:
            if self._state != "disabled":
                self._state = "stopped"
        if self._api is not None and self._thread is None:
            try:
                self._api.close()
            except Exception as exc:  # closing is best effort: the thread has stopped already
                log.debug("closing the Kubernetes API client: %s", exc)
            self._api = None

    # ---- the cache thread ------------------------------------------------------------------------

    def _get(self, path: str, query: list[tuple[str, str]], timeout: Any) -> Any:
        """GET an API path; the raw urllib3 response, whose JSON the caller reads.

        This is what the typed methods (``CoreV1Api.list_pod_for_all_namespaces(...,
        _preload_content=False)``) do, without them: importing the typed API classes loads every
        model, about 27 MiB of RSS, for objects we never build.
        """
        from kubernetes.client.exceptions import ApiException

        request = self._api.param_serialize("GET", path, query_params=query,
                                            header_params={"Accept": "application/json"},
                                            auth_settings=["BearerToken"])
        resp = self._api.call_api(*request, _request_timeout=timeout)
        if not 200 <= resp.status <= 299:
            resp.read()
            raise ApiException.from_response(http_resp=resp, body=None, data=None)
        return resp.response

    def _run(self) -> None:
        failures = 0
        gone_streak = 0
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                else:
                    self._retry_unresolved()
                got_events = self._watch()
                if not got_events and not self._stop.is_set():
                    # An empty watch that ended by itself: don't spin if the server keeps doing that.
                    self._stop.wait(min(self._backoff[0], 1.0))
                failures = gone_streak = 0
            except _Gone as exc:
                with self._lock:
                    self._expired += 1
                log.info("pod watch expired (%s), listing again", exc)
                need_list = True
                gone_streak += 1
                if gone_streak > 1:  # expired again straight after a list: don't hammer the server
                    self._stop.wait(self._backoff[min(gone_streak - 2, len(self._backoff) - 1)])
            except Exception as exc:
                if self._stop.is_set():
                    break
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                failures += 1
                msg = _describe(exc)
                with self._lock:
                    self._state = "backoff"
                    self._last_error = msg
                log.warning(
                    "pod %s failed (%s); retrying in %.1f s", "list" if need_list else "watch", msg, delay
                )
                self._stop.wait(delay)

    def _list(self) -> None:
        with self._lock:
            self._lists += 1
        resp = self._get("/api/v1/pods", [("fieldSelector", f"spec.nodeName={self.node_name}")],
                         (min(10.0, self._request_timeout), self._request_timeout))
        body = self._read_all(resp)
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list):
            raise ValueError("pod list response is not a PodList")
        rv = (doc.get("metadata") or {}).get("resourceVersion")
        if not _nonempty_str(rv):
            raise ValueError("pod list response has no metadata.resourceVersion")
        old = self.pods()
        fresh: dict[str, PodInfo] = {}
        for obj in doc.get("items") or []:
            info = self._parse(obj)
            if info is not None and self._ours(info):
                fresh[info.uid] = self._with_workload(info, old.get(info.uid))
        with self._lock:
            self._pods = fresh
            self._by_cid = {cid: uid for uid, p in fresh.items() for cid in p.container_ids}
            self._rv = rv
            self._state = "synced"
            self._unresolved &= fresh.keys()
        self._synced.set()
        log.debug("pod list: %d pods on %s at resourceVersion %s", len(fresh), self.node_name, rv)
        for uid in old.keys() - fresh.keys():
            self._notify(uid, None)
        for uid, info in fresh.items():
            if old.get(uid) != info:
                self._notify(uid, info)

    def _watch(self) -> bool:
        """One watch request; returns whether it delivered any event. Raises on errors and 410."""
        with self._lock:
            self._watches += 1
        try:
            resp = self._get("/api/v1/pods", [
                ("watch", "true"), ("resourceVersion", str(self._rv)),
                ("fieldSelector", f"spec.nodeName={self.node_name}"), ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(self._watch_timeout)),
            ],
                # Read timeout: the server ends the watch after timeoutSeconds; this only catches a
                # connection that died silently.
                (min(10.0, self._request_timeout), self._watch_timeout + 30))
        except Exception as exc:
            if getattr(exc, "status", None) == 410:  # some servers answer the request itself with 410
                raise _Gone(_describe(exc)) from exc
            raise
        if not self._hold(resp):
            self._release(resp, False)
            return False
        with self._lock:
            self._state = "synced"
        got = False
        clean = False
        try:
            for line in _iter_lines(resp):
                if self._stop.is_set():
                    return got
                if line.strip():
                    got = True
                    self._handle(line)
            clean = True
        finally:
            self._release(resp, clean)
        return got

    def _handle(self, line: bytes) -> None:
        try:
            ev = json.loads(line)
        except ValueError:
            self._skip("watch line is not JSON", line[:200])
            return
        etype = ev.get("type") if isinstance(ev, dict) else None
        obj = ev.get("object") if isinstance(ev, dict) else None
        if etype == "ERROR":
            code = obj.get("code") if isinstance(obj, Mapping) else None
            if isinstance(obj, Mapping):
                text = f"{code} {obj.get('reason')}: {obj.get('message')}"
            else:
                text = str(obj)
            if code == 410:
                raise _Gone(text)
            raise _WatchError(f"watch ERROR event: {text}")
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if etype == "BOOKMARK":
            if _nonempty_str(rv):
                with self._lock:
                    self._rv = rv
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            self._skip(f"unknown watch event type {etype!r}", line[:200])
            return
        with self._lock:
            self._events += 1
        if etype == "DELETED":
            uid = meta.get("uid") if isinstance(meta, Mapping) else None
            if not _nonempty_str(uid):
                self._skip("DELETED event without metadata.uid", line[:200])
            else:
                self._remove(uid)
        else:
            info = self._parse(obj)
            if info is not None:
                if self._ours(info):
                    self._upsert(self._with_workload(info, self.get(info.uid)))
                else:
                    self._remove(info.uid)  # moved off this node (a real pod never does)
        if _nonempty_str(rv):
            with self._lock:
                self._rv = rv

    # ---- cache updates ---------------------------------------------------------------------------

    def _parse(self, obj: Any) -> PodInfo | None:
        """The pod's info without workload resolution, or None (skipped and counted) if malformed."""
        try:
            return pod_info_from_api(obj)
        except ValueError as exc:
            self._skip(str(exc), json.dumps(obj)[:200] if _jsonable(obj) else repr(obj)[:200])
            return None

    def _ours(self, info: PodInfo) -> bool:
        # The field selector already filters; this guards against a server that ignores it.
        return info.node_name == self.node_name

    def _upsert(self, info: PodInfo) -> None:
        with self._lock:
            old = self._pods.get(info.uid)
            if old == info:
                return
            if old is not None:
                for cid in old.container_ids:
                    self._by_cid.pop(cid, None)
            self._pods[info.uid] = info
            for cid in info.container_ids:
                self._by_cid[cid] = info.uid
        self._notify(info.uid, info)

    def _remove(self, uid: str) -> None:
        with self._lock:
            old = self._pods.pop(uid, None)
            self._unresolved.discard(uid)
            if old is None:
                return
            for cid in old.container_ids:
                if self._by_cid.get(cid) == uid:
                    del self._by_cid[cid]
        self._notify(uid, None)

    def _notify(self, uid: str, info: PodInfo | None) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(uid, info)
        except Exception:
            log.exception("pod cache on_change callback failed for %s", uid)

    def _skip(self, why: str, sample: Any) -> None:
        with self._lock:
            self._skipped += 1
            n = self._skipped
        # The first few in full, then one line per hundred: a broken API must not flood the log.
        if n <= 5 or n % 100 == 0:
            log.warning("pod cache skipped an object (%d so far): %s: %s", n, why, sample)

    # ---- owner workloads -------------------------------------------------------------------------

    def _with_workload(self, info: PodInfo, previous: PodInfo | None) -> PodInfo:
        kind = info.owner_kind
        if kind not in ("ReplicaSet", "Job") or not info.owner_name:
            return info
        if (
            previous is not None
            and previous.owner_uid == info.owner_uid
            and previous.owner_name == info.owner_name
            and info.uid not in self._unresolved
        ):
            top = (previous.workload_kind, previous.workload_name, previous.workload_uid)
        else:
            top = self._lookup_owner(kind, info.namespace, info.owner_name, info.owner_uid, info.uid)
        if top is None or top[0] is None:
            return info
        return dataclasses.replace(info, workload_kind=top[0], workload_name=top[1], workload_uid=top[2])

    def _lookup_owner(
        self, kind: str, namespace: str, name: str, uid: str | None, pod_uid: str
    ) -> tuple[str, str, str | None] | None:
        """The Deployment/CronJob above a ReplicaSet/Job, or ``None`` to use the direct owner."""
        key = (kind, namespace, name, uid)
        now = time.monotonic()
        hit, expires = self._owners.get(key, (_MISS, 0.0))
        if hit is not _MISS and (expires == 0.0 or expires > now):
            self._owners.move_to_end(key)
            return hit
        if now < self._owners_blocked_until:
            self._unresolved.add(pod_uid)
            return None
        want = "Deployment" if kind == "ReplicaSet" else "CronJob"
        timeout = (self._owner_timeout, self._owner_timeout)
        with self._lock:
            self._owner_lookups += 1
        try:
            group = "apps/v1/namespaces/{}/replicasets" if kind == "ReplicaSet" else "batch/v1/namespaces/{}/jobs"
            path = f"/apis/{group.format(quote(namespace, safe=''))}/{quote(name, safe='')}"
            resp = self._get(path, [], timeout)
            self._hold(resp)
            obj = json.loads(self._read_all(resp))
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in (403, 404):
                # Final: the object is gone, or we may not read it (RBAC). Use the direct owner.
                if status == 403 and kind not in self._forbidden_logged:
                    self._forbidden_logged.add(kind)
                    log.warning(
                        "may not read %ss (%s); pods keep their %s as workload", kind, _describe(exc), kind
                    )
                self._remember(key, None, 0.0)
                self._unresolved.discard(pod_uid)
                return None
            if self._stop.is_set():
                return None
            log.warning(
                "%s %s/%s lookup failed (%s); owner lookups pause for %.0f s",
                kind,
                namespace,
                name,
                _describe(exc),
                self._owner_retry,
            )
            self._owners_blocked_until = time.monotonic() + self._owner_retry
            self._unresolved.add(pod_uid)
            return None
        self._unresolved.discard(pod_uid)
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        if not isinstance(meta, Mapping) or (uid and meta.get("uid") != uid):
            # A different object of the same name (deleted and recreated): not our owner.
            self._remember(key, None, now + self._owner_retry)
            return None
        ref = _controller_ref(meta.get("ownerReferences"))
        top: tuple[str, str, str | None] | None = None
        if ref is not None and ref.get("kind") == want:
            top = (want, str(ref["name"]), ref.get("uid") if _nonempty_str(ref.get("uid")) else None)
        self._remember(key, top, 0.0)
        return top

    def _remember(self, key: tuple[str, str, str, str | None], value: Any, expires: float) -> None:
        self._owners[key] = (value, expires)
        self._owners.move_to_end(key)
        while len(self._owners) > self._owner_cache_size:
            self._owners.popitem(last=False)

    def _retry_unresolved(self) -> None:
        """Re-resolve pods whose owner lookup failed transiently (called before each re-watch)."""
        if not self._unresolved or time.monotonic() < self._owners_blocked_until:
            return
        for uid in list(self._unresolved):
            if self._stop.is_set() or time.monotonic() < self._owners_blocked_until:
                return
            info = self.get(uid)
            if info is None:
                self._unresolved.discard(uid)
                continue
            self._unresolved.discard(uid)
            fixed = self._with_workload(info, None)
            if fixed != info:
                self._upsert(fixed)

    # ---- response handling -----------------------------------------------------------------------

    def _hold(self, resp: Any) -> bool:
        """Remember ``resp`` so stop() can shut it down; False (and shut) if stopping already."""
        with self._lock:
            self._resp = resp
        if self._stop.is_set():
            _shutdown(resp)
            return False
        return True

    def _read_all(self, resp: Any) -> bytes:
        self._hold(resp)
        try:
            return resp.data
        finally:
            self._release(resp, True)

    def _release(self, resp: Any, clean: bool) -> None:
        with self._lock:
            if self._resp is resp:
                self._resp = None
        try:
            if clean:
                resp.release_conn()
            else:
                resp.close()
        except Exception:  # releasing is best effort
            pass


def _iter_lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited watch events from a chunked urllib3 response, as each chunk arrives."""
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=True):
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            yield buf[:i]
            buf = buf[i + 1 :]
    if buf.strip():
        yield buf


def _shutdown(resp: Any) -> None:
    """Shut down the socket under a urllib3 response so a blocked read returns now."""
    if resp is None:
        return
    try:
        resp.shutdown()
    except Exception:  # already released or closed: nothing to interrupt
        pass


def _describe(exc: BaseException) -> str:
    """One line for an exception; for an ApiException, the status and the Status message."""
    status = getattr(exc, "status", None)
    if status is not None and hasattr(exc, "reason"):
        msg = ""
        body = getattr(exc, "body", None)
        if body:
            try:
                msg = json.loads(body).get("message", "")
            except (ValueError, AttributeError):
                msg = ""
        return f"HTTP {status} {exc.reason}" + (f": {msg}" if msg else "")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _jsonable(obj: Any) -> bool:
    try:
        json.dumps(obj)
    except (TypeError, ValueError):
        return False
    return True
