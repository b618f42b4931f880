# SPDX-License-Identifier: Apache-2.0
"""The agent's HTTP endpoints: ``/status``, ``/healthz``, ``/readyz``, and the compat ``/metrics``.

Listens on the config's ``address`` (``[tcp://]host:port``, ``:port`` or ``unix:///path``), upstream
default ``:9102``. Nothing else is served: no debug or profiling endpoints.

The server is the standard library's, held to bounds, so that clients cannot take from collection
the descriptors and threads it needs (each connection costs one of each):

- at most :data:`MAX_CONNECTIONS` connections are served at once; one more is answered ``503`` and
  closed at once;
- a connection gets :data:`READ_TIMEOUT` seconds per read and write, and :data:`REQUEST_DEADLINE`
  seconds in all (a client sending one byte at a time is cut off too);
- one request per connection (HTTP/1.0), request lines and headers as ``http.server`` caps them;
- when ``accept`` fails (out of descriptors: ``EMFILE``) the listener waits
  :data:`ACCEPT_BACKOFF` seconds before trying again instead of spinning, and the failure is
  counted and logged at most once a minute.

Errors of a connection (a client that went away, a timeout) are logged at DEBUG through
``logging``, never as a traceback on stderr. The counts are in :meth:`HTTPServer.status`.
A server library (waitress, for one) would bring the same bounds, but also a WSGI layer and an
event loop of its own for four small routes; these bounds are a few lines on the standard server.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Route = Callable[[], tuple[int, str, bytes]]

#: Connections served at once; more are answered 503 at once.
MAX_CONNECTIONS = 32
#: Seconds a connection may wait for each read or write.
READ_TIMEOUT = 5.0
#: Seconds a connection may take in all, from accept to the last byte sent.
REQUEST_DEADLINE = 15.0
#: Seconds the listener waits after a failed accept (out of descriptors).
ACCEPT_BACKOFF = 0.5
#: Pending connections the kernel keeps for the listener (they cost the agent nothing).
BACKLOG = 128
# serve_forever's poll interval: stop() waits up to this long for the loop to notice.
STOP_SECONDS = 0.5
_LOG_EVERY = 60.0
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
         b"Connection: close\r\n\r\nbusy\n")


def json_response(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(body, indent=1, default=str) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "otel-kubeskoop"
    timeout: float | None = READ_TIMEOUT  # socket timeout for every read and write
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


class _Bounded(socketserver.ThreadingMixIn):
    """A thread per connection, at most :data:`MAX_CONNECTIONS` of them, each within
    :data:`REQUEST_DEADLINE`; failed accepts back off; errors go to the log."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG

    def _init_bounds(self, max_connections: int, deadline: float) -> None:
        self.max_connections = max_connections
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: dict[socket.socket, float] = {}  # connection -> when it must be done
        self._open_lock = threading.Lock()
        self.counts = {"handled": 0, "rejected_busy": 0, "cut_at_deadline": 0, "failed": 0,
                       "accept_failed": 0}
        self.last_accept_error = ""
        self._logged: dict[str, float] = {}

    def _count(self, key: str) -> None:
        with self._open_lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._open_lock:
            return {**self.counts, "open": len(self._open)}

    def _log_limited(self, key: str, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[key] = now
            log.log(level, msg + " (logged at most once a minute; counts in /status)", *args)

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()  # type: ignore[misc]
        except OSError as exc:
            self._count("accept_failed")
            self.last_accept_error = str(exc)
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._log_limited("accept", logging.WARNING, "HTTP: cannot accept: %s", exc)
                time.sleep(ACCEPT_BACKOFF)  # the listener stays readable: do not spin
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._count("rejected_busy")
            self._log_limited("busy", logging.WARNING, "HTTP: %d connections open, more refused",
                              self.max_connections)
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass  # the client is gone or not reading: closing is all that is left
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = time.monotonic() + self.deadline
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
            self._count("handled")
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._open_lock:
            if self._open.pop(request, None) is None:
                return
        self._slots.release()

    def service_actions(self) -> None:
        """Called by ``serve_forever`` about every half second: cut connections past their
        deadline (``shutdown`` wakes the handler thread blocked on them)."""
        now = time.monotonic()
        with self._open_lock:
            late = [conn for conn, deadline in self._open.items() if deadline <= now]
        for conn in late:
            self._count("cut_at_deadline")
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed meanwhile

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("HTTP %s: %s: %s", client_address, type(exc).__name__, exc)
            return
        self._count("failed")
        self._log_limited(f"error:{type(exc).__name__}", logging.WARNING, "HTTP %s: %s: %s",
                          client_address, type(exc).__name__, exc)


class _TCPServer(_Bounded, ThreadingHTTPServer):
    pass


class _TCP6Server(_TCPServer):
    address_family = socket.AF_INET6


class _UnixHTTPServer(_Bounded, socketserver.UnixStreamServer):
    pass


class HTTPServer:
    """Serve ``routes`` on ``address`` within the bounds of the module docstring."""

    def __init__(self, address: str, routes: dict[str, Route], *,
                 max_connections: int = MAX_CONNECTIONS, read_timeout: float = READ_TIMEOUT,
                 deadline: float = REQUEST_DEADLINE) -> None:
        handler = type("Handler", (_Handler,), {"routes": dict(routes), "timeout": read_timeout})
        self._paths = ", ".join(sorted(routes))
        self._unix_path: str | None = None
        server: _TCPServer | _UnixHTTPServer
        if address.startswith("unix://"):
            path = address.removeprefix("unix://")
            if os.path.exists(path):
                os.unlink(path)  # a stale socket from an unclean exit
            server = _UnixHTTPServer(path, handler)
            self._unix_path = path
            self.bound = address
        else:
            host, _, port = address.rpartition(":")
            host = host.strip("[]") or "0.0.0.0"
            server = (_TCP6Server if ":" in host else _TCPServer)((host, int(port)), handler)
            bound_host, bound_port = server.server_address[:2]  # type: ignore[misc]
            self.bound = f"{bound_host}:{bound_port}"
        server._init_bounds(max_connections, deadline)
        self._server = server
        self._thread = threading.Thread(target=self._server.serve_forever, args=(STOP_SECONDS,),
                                        name="kubeskoop-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving %s on %s (at most %d connections at once, %gs each)", self._paths,
                 self.bound, self._server.max_connections, self._server.deadline)

    def status(self) -> dict[str, Any]:
        """Connections served, refused and cut, and failed accepts, since start."""
        out = self._server.snapshot()
        if self._server.last_accept_error:
            out["last_accept_error"] = self._server.last_accept_error
        return out

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        if self._unix_path and os.path.exists(self._unix_path):
            os.unlink(self._unix_path)
