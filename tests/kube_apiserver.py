# SPDX-License-Identifier: Apache-2.0
"""A Kubernetes API server stand-in for tests: real paths, real JSON, plain HTTP on 127.0.0.1.

It speaks just enough of the API for the agent's pod cache, so the real ``kubernetes`` client can be
driven against it over HTTP:

- ``GET /version``;
- ``GET /api/v1/pods`` and ``GET /api/v1/namespaces/<ns>/pods``: a ``PodList`` whose
  ``metadata.resourceVersion`` is the server's current resource version. ``fieldSelector`` is honoured
  for ``spec.nodeName``, ``metadata.name`` and ``metadata.namespace`` (``=``, ``==``, ``!=``); any
  other field is a 400, as on a real server. ``limit``/``continue`` are ignored (allowed by the API:
  a server may return everything);
- the same paths with ``watch=true``: a chunked stream of newline-delimited events
  ``{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}``. Without a
  ``resourceVersion`` (or with ``"0"``) the stream starts with a synthetic ``ADDED`` per current pod,
  as the real server does; with one, every later event still in the server's history is replayed
  first, so nothing is lost between a list and its watch. A ``resourceVersion`` older than the last
  :meth:`KubeAPIServer.expire_watches` gets a single ``ERROR`` event carrying a ``Status`` with code
  410 and reason ``Expired``, then the stream ends (what a real API server does for a too-old
  version). ``timeoutSeconds`` ends the stream cleanly. With a field selector, a modification moving
  an object into (out of) the selection is sent as ``ADDED`` (``DELETED``), as the real server does;
- ``GET /api/v1/services``: a ``ServiceList`` of the Services added (:meth:`add_service`);
- ``GET /apis/apps/v1/namespaces/<ns>/replicasets/<name>`` and
  ``GET /apis/batch/v1/namespaces/<ns>/jobs/<name>`` (``404`` ``Status`` JSON when absent, ``403``
  after :meth:`KubeAPIServer.forbid`).

Test controls: :meth:`add_pod`, :meth:`update_pod`, :meth:`delete_pod` (each bumps the global resource
version and pushes an event to open watches), :meth:`add_replicaset`, :meth:`add_job`,
:meth:`expire_watches`, :meth:`send_bookmark`, :meth:`fail_next`, :meth:`forbid`, ``get_delay``;
counters :attr:`list_requests`, :attr:`watch_requests`, :attr:`get_requests`, :attr:`open_watches`;
:attr:`base_url`; :meth:`write_kubeconfig` (for ``kubernetes.config.load_kube_config``).

Objects are built from the real-shaped JSON in ``tests/fixtures/k8s/`` by :func:`make_pod`,
:func:`make_replicaset` and :func:`make_job`.

Typical use::

    with KubeAPIServer() as api:
        api.add_pod(make_pod("web-1", "shop", uid, "node-a", owner=("ReplicaSet", "web-6d4b")))
        api.write_kubeconfig(tmp_path / "kubeconfig")
        ...
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import queue
import select
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"

__all__ = [
    "FIXTURES",
    "KubeAPIServer",
    "container_id",
    "make_job",
    "make_pod",
    "make_replicaset",
]


# --------------------------------------------------------------------------------------------------
# Objects


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _uid_for(*parts: str) -> str:
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def container_id(pod_uid: str, container: str) -> str:
    """The deterministic 64-hex container id :func:`make_pod` gives ``container`` of pod ``pod_uid``."""
    return hashlib.sha256(f"{pod_uid}/{container}".encode()).hexdigest()


_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Node": "v1",
}


def _owner_ref(kind: str, name: str, uid: str | None, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": _API_VERSIONS.get(kind, "example.com/v1"),
        "kind": kind,
        "name": name,
        "uid": uid or _uid_for(kind, namespace, name),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def make_pod(
    name: str,
    namespace: str,
    uid: str,
    node: str | None,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owner: tuple[str, str] | tuple[str, str, str] | None = None,
    host_network: bool = False,
    pod_ip: str | None = "10.244.1.17",
    host_ip: str = "172.18.0.3",
    containers: Sequence[str | Mapping[str, Any]] = ("app",),
    init_containers: Sequence[str] = (),
    start_time: str | None = "2026-08-20T09:14:02Z",
    phase: str = "Running",
) -> dict[str, Any]:
    """Real Pod JSON, from ``tests/fixtures/k8s/pod.json`` with the given identity.

    ``owner`` is ``(kind, name)`` or ``(kind, name, uid)`` (uid derived from kind/namespace/name when
    omitted, matching :func:`make_replicaset`/:func:`make_job`), or ``None`` for a bare pod.
    ``containers`` are names, or dicts with ``name`` and optionally ``image`` and ``id`` (64 hex;
    ``""`` for a container not started yet). Container ids default to :func:`container_id`.
    ``node=None`` is an unscheduled pod (no ``spec.nodeName``). With ``host_network`` the pod IP is
    the host IP, as the kubelet reports it.
    """
    pod = _fixture("pod.json")
    meta = pod["metadata"]
    meta.update(name=name, namespace=namespace, uid=uid, generateName=f"{name.rsplit('-', 1)[0]}-")
    meta["labels"] = dict(labels) if labels is not None else {"app.kubernetes.io/name": name}
    meta["annotations"] = dict(annotations or {})
    if not meta["annotations"]:
        del meta["annotations"]
    if owner is None:
        del meta["ownerReferences"]
        del meta["generateName"]
    else:
        kind, oname, *ouid = owner
        meta["ownerReferences"] = [_owner_ref(kind, oname, ouid[0] if ouid else None, namespace)]
    for mf in meta["managedFields"]:
        mf["fieldsV1"].get("f:metadata", {}).pop("f:ownerReferences", None)

    spec = pod["spec"]
    template = spec["containers"][0]
    spec_containers = []
    statuses = []
    for c in containers:
        c = {"name": c} if isinstance(c, str) else dict(c)
        sc = copy.deepcopy(template)
        sc["name"] = c["name"]
        sc["image"] = c.get("image", f"registry.example.com/{namespace}/{c['name']}:1.0.0")
        spec_containers.append(sc)
        cid = c.get("id", container_id(uid, c["name"]))
        st = copy.deepcopy(pod["status"]["containerStatuses"][0])
        st.update(name=c["name"], image=sc["image"])
        if cid:
            st["containerID"] = f"containerd://{cid}"
        else:
            del st["containerID"]
            st["state"] = {"waiting": {"reason": "ContainerCreating"}}
            st["ready"] = st["started"] = False
        statuses.append(st)
    spec["containers"] = spec_containers
    if init_containers:
        spec["initContainers"] = []
        pod["status"]["initContainerStatuses"] = []
        for ic in init_containers:
            sc = copy.deepcopy(template)
            sc.update(name=ic, image=f"registry.example.com/{namespace}/{ic}:1.0.0")
            spec["initContainers"].append(sc)
            pod["status"]["initContainerStatuses"].append(
                {
                    "name": ic,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": "2026-08-20T09:14:03Z",
                            "finishedAt": "2026-08-20T09:14:03Z",
                            "containerID": f"containerd://{container_id(uid, ic)}",
                        }
                    },
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": sc["image"],
                    "imageID": sc["image"] + "@sha256:" + container_id(uid, ic + "/image"),
                    "containerID": f"containerd://{container_id(uid, ic)}",
                    "started": False,
                }
            )
    if node is None:
        del spec["nodeName"]
    else:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"

    status = pod["status"]
    status["phase"] = phase
    status["containerStatuses"] = statuses
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    ip = host_ip if host_network else pod_ip
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    else:
        del status["podIP"], status["podIPs"]
    if start_time:
        status["startTime"] = start_time
    else:
        del status["startTime"]
    if node is None:
        # Unscheduled: only PodScheduled=False, no IPs, no container statuses.
        pod["status"] = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-08-20T09:14:02Z",
                    "reason": "Unschedulable",
                }
            ],
            "qosClass": "Burstable",
        }
    return pod


def make_replicaset(
    name: str, namespace: str, *, deployment: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    """Real ReplicaSet JSON from ``tests/fixtures/k8s/replicaset.json``; owned by ``deployment`` if given."""
    rs = _fixture("replicaset.json")
    meta = rs["metadata"]
    meta.update(name=name, namespace=namespace, uid=uid or _uid_for("ReplicaSet", namespace, name))
    if deployment is None:
        del meta["ownerReferences"]
    else:
        meta["ownerReferences"] = [_owner_ref("Deployment", deployment, None, namespace)]
    return rs


def make_job(
    name: str, namespace: str, *, cronjob: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    """Real Job JSON from ``tests/fixtures/k8s/job.json``; owned by ``cronjob`` if given."""
    job = _fixture("job.json")
    meta = job["metadata"]
    uid = uid or _uid_for("Job", namespace, name)
    meta.update(name=name, namespace=namespace, uid=uid)
    for k in ("batch.kubernetes.io/job-name", "job-name"):
        meta["labels"][k] = name
    for k in ("batch.kubernetes.io/controller-uid", "controller-uid"):
        meta["labels"][k] = uid
    if cronjob is None:
        del meta["ownerReferences"]
        del meta["annotations"]
    else:
        meta["ownerReferences"] = [_owner_ref("CronJob", cronjob, None, namespace)]
    return job


def make_service(name: str, namespace: str, cluster_ips: Sequence[str] = ("10.96.41.7",)) -> dict[str, Any]:
    """Real Service JSON from ``tests/fixtures/k8s/service.json``; ``cluster_ips`` empty: headless."""
    svc = _fixture("service.json")
    svc["metadata"].update(name=name, namespace=namespace, uid=_uid_for("Service", namespace, name))
    svc["spec"]["clusterIP"] = cluster_ips[0] if cluster_ips else "None"
    svc["spec"]["clusterIPs"] = list(cluster_ips) if cluster_ips else ["None"]
    return svc


def _status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict:
    st: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        st["details"] = dict(details)
    return st


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    410: "Gone",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


# --------------------------------------------------------------------------------------------------
# Server state


@dataclass
class _Selector:
    terms: list[tuple[str, str, bool]] = field(default_factory=list)  # (field, value, equal)

    def matches(self, pod: Mapping[str, Any] | None) -> bool:
        if pod is None:
            return False
        for fld, value, equal in self.terms:
            if fld == "spec.nodeName":
                actual = pod.get("spec", {}).get("nodeName", "")
            elif fld == "metadata.name":
                actual = pod.get("metadata", {}).get("name", "")
            else:
                actual = pod.get("metadata", {}).get("namespace", "")
            if (actual == value) != equal:
                return False
        return True


_SUPPORTED_FIELDS = ("spec.nodeName", "metadata.name", "metadata.namespace")


def _parse_field_selector(text: str) -> _Selector:
    sel = _Selector()
    for term in filter(None, (t.strip() for t in text.split(","))):
        for op, equal in (("!=", False), ("==", True), ("=", True)):
            if op in term:
                fld, value = term.split(op, 1)
                break
        else:
            raise ValueError(f"invalid field selector term {term!r}")
        if fld not in _SUPPORTED_FIELDS:
            raise ValueError(f'field label not supported: "{fld}"')
        sel.terms.append((fld, value, equal))
    return sel


@dataclass
class _Watch:
    selector: _Selector
    namespace: str | None
    bookmarks: bool
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)

    def wants(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"]["namespace"] != self.namespace:
            return False
        return self.selector.matches(obj)

    def translate(self, etype: str, old: dict | None, new: dict) -> str | None:
        """The event type this watcher sees for a change, or None (not in its selection)."""
        if etype == "MODIFIED":
            was, now = self.wants(old), self.wants(new)
            if was and now:
                return "MODIFIED"
            if now:
                return "ADDED"
            if was:
                return "DELETED"
            return None
        return etype if self.wants(new) else None


_END = object()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, api: KubeAPIServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):  # type: ignore[override]
        sock, addr = super().get_request()
        with self.conn_lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (read timeout, shutdown) is not a server error.
        exc = sys.exc_info()[1]
        if self.api._closing or isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class KubeAPIServer:
    """See the module docstring. Use as a context manager, or call :meth:`start`/:meth:`close`."""

    def __init__(self, *, git_version: str = "v1.33.1", history_limit: int = 10000) -> None:
        """``history_limit``: events kept for watches resuming from an older resourceVersion
        (older ones get 410 Expired, as etcd compaction does). Each holds whole pod objects, so
        memory-sensitive tests keep it small."""
        self.git_version = git_version
        self._history_limit = max(2, history_limit)
        self._lock = threading.Lock()
        self._rv = 1000
        self._oldest_valid_rv = 0  # watches from a resourceVersion below this get 410 Expired
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._history: list[tuple[int, str, dict | None, dict]] = []  # (rv, type, old, new)
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (resource, ns, name)
        self._watches: list[_Watch] = []
        self._fail: list[tuple[int, str | None]] = []  # (status, kind or None) per request to fail
        self._forbidden: set[str] = set()
        self._closing = False
        self.get_delay = 0.0
        """Seconds each ReplicaSet/Job GET waits before answering (to test client timeouts)."""
        self.list_requests = 0
        self.watch_requests = 0
        self.get_requests = 0
        self.requests: list[tuple[str, str]] = []
        """(method, path?query) of every request, in arrival order."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> KubeAPIServer:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kube-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; end open watches; close every connection; join the handler threads."""
        if self._server is None:
            return
        self._closing = True
        with self._lock:
            for w in self._watches:
                w.events.put(_END)
        self._server.shutdown()
        with self._server.conn_lock:
            conns = list(self._server.connections)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def write_kubeconfig(self, path: str | Path) -> str:
        """Write a kubeconfig (plain http, no auth) pointing at this server; returns the path as a str.

        A str because ``kubernetes.config.load_kube_config(config_file=...)`` (37.0.2) fails on a
        :class:`~pathlib.Path` (``'PosixPath' object has no attribute 'split'``).
        """
        path = Path(path)
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.base_url}}],
            "users": [{"name": "stand-in", "user": {}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
            "current-context": "stand-in",
            "preferences": {},
        }
        path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
        return str(path)

    # ---- test controls ---------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._watches)

    def add_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Create a pod (replaces one with the same namespace/name as a MODIFIED); returns the stored copy."""
        return self._put_pod(pod, "ADDED")

    def update_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        return self._put_pod(pod, "MODIFIED")

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            old = self._pods.pop((namespace, name), None)
            if old is None:
                return None
            self._rv += 1
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = str(self._rv)
            final["metadata"].setdefault("deletionTimestamp", "2026-08-21T10:00:00Z")
            final["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            self._publish("DELETED", old, final)
            return final

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._pods.values()]

    def add_replicaset(self, rs: Mapping[str, Any]) -> None:
        self._add_object("replicasets", rs)

    def add_job(self, job: Mapping[str, Any]) -> None:
        self._add_object("jobs", job)

    def add_service(self, svc: Mapping[str, Any]) -> None:
        """Listed by ``GET /api/v1/services`` (a ServiceList; no watch)."""
        self._add_object("services", svc)

    def remove_object(self, resource: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((resource, namespace, name), None)

    def forbid(self, resource: str) -> None:
        """Answer 403 Forbidden to every GET of ``resource`` ("replicasets" or "jobs")."""
        self._forbidden.add(resource)

    def expire_watches(self) -> None:
        """Send a 410 Expired ERROR to every open watch, end them, and reject older resourceVersions."""
        with self._lock:
            self._oldest_valid_rv = self._rv
            self._history.clear()
            for w in self._watches:
                w.events.put(self._expired_event())
                w.events.put(_END)

    def send_bookmark(self) -> None:
        """Send a BOOKMARK carrying the current resourceVersion to watches that allowed bookmarks."""
        with self._lock:
            ev = {
                "type": "BOOKMARK",
                "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)}},
            }
            for w in self._watches:
                if w.bookmarks:
                    w.events.put(ev)

    def fail_next(self, n: int = 1, status: int = 500, *, kind: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (a Status JSON body).

        ``kind`` limits it to "list", "watch" or "get" (ReplicaSet/Job) requests.
        """
        with self._lock:
            self._fail.extend([(status, kind)] * n)

    # ---- internals -------------------------------------------------------------------------------

    def _add_object(self, resource: str, obj: Mapping[str, Any]) -> None:
        obj = copy.deepcopy(dict(obj))
        with self._lock:
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[(resource, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def _put_pod(self, pod: Mapping[str, Any], etype: str) -> dict[str, Any]:
        new = copy.deepcopy(dict(pod))
        key = (new["metadata"]["namespace"], new["metadata"]["name"])
        with self._lock:
            old = self._pods.get(key)
            if etype == "MODIFIED" and old is None:
                raise KeyError(f"no pod {key[0]}/{key[1]} to update")
            if etype == "ADDED" and old is not None:
                etype = "MODIFIED"
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._pods[key] = new
            self._publish(etype, old, new)
            return copy.deepcopy(new)

    def _publish(self, etype: str, old: dict | None, new: dict) -> None:
        # Called with the lock held.
        self._history.append((self._rv, etype, old, new))
        if len(self._history) > self._history_limit:
            del self._history[: self._history_limit // 2]
            self._oldest_valid_rv = self._history[0][0] - 1
        for w in self._watches:
            t = w.translate(etype, old, new)
            if t is not None:
                w.events.put({"type": t, "object": new})

    def _expired_event(self) -> dict[str, Any]:
        return {
            "type": "ERROR",
            "object": _status(
                410, "Expired", f"too old resource version: requested is older than {self._oldest_valid_rv}"
            ),
        }

    def _take_failure(self, kind: str) -> int | None:
        with self._lock:
            for i, (status, k) in enumerate(self._fail):
                if k is None or k == kind:
                    del self._fail[i]
                    return status
        return None


# --------------------------------------------------------------------------------------------------
# HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # ---- helpers ---------------------------------------------------------------------------------

    def _send_json(self, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", _uid_for(str(time.monotonic_ns())))
        self.end_headers()
        self.wfile.write(data)

    def _send_status(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        self._send_json(code, _status(code, reason or _REASONS.get(code, "Unknown"), message, details))

    # ---- routing ---------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        api = self.server.api
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        with api._lock:
            api.requests.append(("GET", self.path))

        if parts == ["version"]:
            self._send_json(
                200,
                {
                    "major": "1",
                    "minor": api.git_version.split(".")[1],
                    "gitVersion": api.git_version,
                    "gitCommit": "0" * 40,
                    "gitTreeState": "clean",
                    "buildDate": "2026-05-15T00:00:00Z",
                    "goVersion": "go1.24.2",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
            )
            return

        namespace: str | None = None
        if parts == ["api", "v1", "pods"] or (
            len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods"
        ):
            namespace = parts[3] if len(parts) == 5 else None
            watch = query.get("watch", "").lower() in ("true", "1")
            kind = "watch" if watch else "list"
            with api._lock:
                if watch:
                    api.watch_requests += 1
                else:
                    api.list_requests += 1
            failure = api._take_failure(kind)
            if failure is not None:
                self._send_status(failure, f"injected failure {failure}")
                return
            if "labelSelector" in query and query["labelSelector"]:
                self._send_status(400, "labelSelector is not implemented by the stand-in")
                return
            try:
                selector = _parse_field_selector(query.get("fieldSelector", ""))
            except ValueError as exc:
                self._send_status(400, str(exc))
                return
            if watch:
                self._watch(namespace, selector, query)
            else:
                self._list(namespace, selector)
            return

        if parts == ["api", "v1", "services"]:
            failure = api._take_failure("list")
            if failure is not None:
                self._send_status(failure, f"injected failure {failure}")
                return
            with api._lock:
                api.list_requests += 1
                items = [copy.deepcopy(o) for (res, _, _), o in sorted(api._objects.items()) if res == "services"]
                rv = api._rv
            for item in items:
                item.pop("kind", None)  # list items carry no kind/apiVersion
                item.pop("apiVersion", None)
            self._send_json(200, {"kind": "ServiceList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(rv)}, "items": items})
            return

        if len(parts) == 7 and parts[0] == "apis" and parts[3] == "namespaces":
            group_version, resource = "/".join(parts[1:3]), parts[5]
            if (group_version, resource) in (("apps/v1", "replicasets"), ("batch/v1", "jobs")):
                self._get_object(resource, parts[4], parts[6], group=parts[1])
                return

        self._send_status(404, "the server could not find the requested resource")

    # ---- endpoints -------------------------------------------------------------------------------

    def _list(self, namespace: str | None, selector: _Selector) -> None:
        api = self.server.api
        with api._lock:
            items = []
            for (ns, _), pod in sorted(api._pods.items()):
                if (namespace is None or ns == namespace) and selector.matches(pod):
                    item = copy.deepcopy(pod)
                    item.pop("kind", None)  # list items carry no kind/apiVersion
                    item.pop("apiVersion", None)
                    items.append(item)
            rv = api._rv
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}
        body["items"] = items
        self._send_json(200, body)

    def _get_object(self, resource: str, namespace: str, name: str, *, group: str) -> None:
        api = self.server.api
        with api._lock:
            api.get_requests += 1
        if api.get_delay:
            time.sleep(api.get_delay)
        failure = api._take_failure("get")
        if failure is not None:
            self._send_status(failure, f"injected failure {failure}")
            return
        if resource in api._forbidden:
            self._send_status(
                403,
                f'{resource}.{group} "{name}" is forbidden: User '
                f'"system:serviceaccount:kube-system:otel-kubeskoop" cannot get resource "{resource}" '
                f'in API group "{group}" in the namespace "{namespace}"',
                name=name,
                group=group,
                kind=resource,
            )
            return
        with api._lock:
            obj = copy.deepcopy(api._objects.get((resource, namespace, name)))
        if obj is None:
            self._send_status(
                404, f'{resource}.{group} "{name}" not found', name=name, group=group, kind=resource
            )
            return
        self._send_json(200, obj)

    def _watch(self, namespace: str | None, selector: _Selector, query: Mapping[str, str]) -> None:
        api = self.server.api
        w = _Watch(selector, namespace, query.get("allowWatchBookmarks", "").lower() == "true")
        rv_text = query.get("resourceVersion", "")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        with api._lock:
            if rv_text in ("", "0"):
                for pod in api._pods.values():
                    if w.wants(pod):
                        w.events.put({"type": "ADDED", "object": pod})
            else:
                try:
                    rv = int(rv_text)
                except ValueError:
                    rv = -1
                if rv < api._oldest_valid_rv:
                    w.events.put(api._expired_event())
                    w.events.put(_END)
                else:
                    for hrv, etype, old, new in api._history:
                        if hrv > rv:
                            t = w.translate(etype, old, new)
                            if t is not None:
                                w.events.put({"type": t, "object": new})
            api._watches.append(w)
        try:
            self._stream(w, timeout)
        finally:
            with api._lock:
                api._watches.remove(w)

    def _stream(self, w: _Watch, timeout: float | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.connection
        try:
            while not self.server.api._closing:
                wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if wait <= 0:
                    break
                try:
                    ev = w.events.get(timeout=wait)
                except queue.Empty:
                    if self._peer_closed(sock):
                        self.close_connection = True
                        return
                    continue
                if ev is _END:
                    break
                line = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

