# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes API client the pod cache uses: where it comes from, one raw GET, and the
handling of the raw urllib3 responses (line-by-line watch streams, shutdown, error text).

The ``kubernetes`` package is imported lazily, in the functions, and only once there is a
service account or a kubeconfig to use: importing it costs about 0.7 s and 37 MB of RSS
(``bench/results/outage_rss.json``), which an agent without API access should not pay.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

__all__ = ["InFlight", "close_client", "describe", "get", "iter_lines", "join_reader", "load_api_client", "shutdown"]



def load_api_client() -> tuple[ApiClient | None, str]:
    """An API client and a one-line description of where it came from, or ``(None, reason)``.

    In order: the in-cluster service account when ``KUBERNETES_SERVICE_HOST`` is set
    (``kubernetes.config.load_incluster_config``); else the kubeconfig named by ``KUBECONFIG``
    (``:``-separated list allowed) or ``~/.kube/config`` if it exists. The client is tuned for a
    long-running agent: TCP keepalive on (watches through idle-dropping proxies), and read errors not
    retried by urllib3 (its default ``Retry(3)`` retries a timed-out GET three times, so a 2 s
    timeout would stall for 8 s).
    """
    reasons: list[str] = []
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        from kubernetes import client, config

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
    from kubernetes import client, config

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



def get(api: ApiClient, path: str, query: list[tuple[str, str]], timeout: Any) -> Any:
    """GET an API path; the raw urllib3 response, whose JSON the caller reads.

    This is what the typed methods (``CoreV1Api.list_pod_for_all_namespaces(...,
    _preload_content=False)``) do, without them: importing the typed API classes loads every
    model, about 27 MiB of RSS, for objects we never build.
    """
    from kubernetes.client.exceptions import ApiException

    request = api.param_serialize("GET", path, query_params=query, header_params={"Accept": "application/json"},
                                 auth_settings=["BearerToken"])
    resp = api.call_api(*request, _request_timeout=timeout)
    if not 200 <= resp.status <= 299:
        resp.read()
        raise ApiException.from_response(http_resp=resp, body=None, data=None)
    return resp.response


def iter_lines(resp: Any) -> Iterator[bytes]:
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


def shutdown(resp: Any) -> None:
    """Shut down the socket under a urllib3 response so a blocked read returns now."""
    if resp is None:
        return
    try:
        resp.shutdown()
    except Exception:  # already released or closed: nothing to interrupt
        pass


def describe(exc: BaseException) -> str:
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


def join_reader(thread: threading.Thread, timeout: float) -> bool:
    """Join a cache's reader thread (its stop already asked); False, logged, if it outlived
    ``timeout``."""
    thread.join(timeout)
    if thread.is_alive():
        log.warning("%s thread did not stop within %.1f s", thread.name, timeout)
        return False
    return True


def close_client(api: Any) -> None:
    """Close an API client whose thread has stopped (best effort)."""
    try:
        api.close()
    except Exception as exc:  # closing is best effort: nothing uses the client any more
        log.debug("closing the Kubernetes API client: %s", exc)


class InFlight:
    """The one raw response being read, so that another thread can shut its socket down
    (:meth:`interrupt`) and end a blocked read at once; once ``stopping()``, a new response is shut
    as soon as it is held."""

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self._stopping = stopping
        self._lock = threading.Lock()
        self._resp: Any = None

    def hold(self, resp: Any) -> bool:
        """Remember ``resp``; False (and shut) if stopping already."""
        with self._lock:
            self._resp = resp
        if self._stopping():
            shutdown(resp)
            return False
        return True

    def read_all(self, resp: Any) -> bytes:
        self.hold(resp)
        try:
            return resp.data
        finally:
            self.release(resp, True)

    def release(self, resp: Any, clean: bool) -> None:
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

    def interrupt(self) -> None:
        with self._lock:
            resp = self._resp
        shutdown(resp)
