# SPDX-License-Identifier: Apache-2.0
"""The agent's HTTP endpoints: ``/status``, ``/healthz``, ``/readyz``, and the compat ``/metrics``.

Listens on the config's ``address`` (``[tcp://]host:port``, ``:port`` or ``unix:///path``), upstream
default ``:9102``. Nothing else is served: no debug or profiling endpoints.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Route = Callable[[], tuple[int, str, bytes]]


def json_response(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(body, indent=1, default=str) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "otel-kubeskoop"
    routes: dict[str, Route] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self._serve("")

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        self._serve("POST ")  # POST routes are keyed "POST /path"

    def _serve(self, method: str) -> None:
        route = self.routes.get(method + self.path.split("?", 1)[0])
        if route is None:
            status, ctype, body = 404, "text/plain", b"not found\n"
        else:
            try:
                status, ctype, body = route()
            except Exception as exc:  # a handler bug is a 500, never a dead server
                log.error("HTTP %s: %s: %s", self.path, type(exc).__name__, exc)
                status, ctype, body = 500, "text/plain", f"{type(exc).__name__}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server API)
        log.debug("HTTP %s " + format, self.address_string(), *args)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class HTTPServer:
    def __init__(self, address: str, routes: dict[str, Route]) -> None:
        handler = type("Handler", (_Handler,), {"routes": dict(routes)})
        self._paths = ", ".join(sorted(routes))
        self._unix_path: str | None = None
        if address.startswith("unix://"):
            path = address.removeprefix("unix://")
            if os.path.exists(path):
                os.unlink(path)  # a stale socket from an unclean exit
            self._server: socketserver.BaseServer = _UnixHTTPServer(path, handler)
            self._unix_path = path
            self.bound = address
        else:
            host, _, port = address.rpartition(":")
            host = host.strip("[]") or "0.0.0.0"
            cls = ThreadingHTTPServer
            if ":" in host:
                cls = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
            self._server = cls((host, int(port)), handler)
            self._server.daemon_threads = True  # type: ignore[attr-defined]
            bound_host, bound_port = self._server.server_address[:2]  # type: ignore[misc]
            self.bound = f"{bound_host}:{bound_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubeskoop-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving %s on %s", self._paths, self.bound)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self._unix_path and os.path.exists(self._unix_path):
            os.unlink(self._unix_path)
