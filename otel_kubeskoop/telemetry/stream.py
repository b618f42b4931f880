# SPDX-License-Identifier: Apache-2.0
"""The live event stream: the agent's events (and a per-cycle summary for ``top``) to local
clients over a unix socket (``eventStream.path``, mode 0600: root on this node only; never on the
metrics address).

A client connects and sends one JSON line: ``{"mode": "events", "filters": {...}}`` or
``{"mode": "top"}``. The agent answers ``{"hello": {...}}`` and then one JSON object per line:
``{"event": <record>}`` (``events.event_record``), ``{"lost": n, "total_lost": m}`` when its queue
had no room for ``n`` events, or ``{"cycle": {...}}`` (``top``).

The event path is never slowed by a client: the emitter's hook filters and appends to the client's
bounded queue (or counts the event dropped) and returns; each client has a writer thread of its own
that formats and sends. A client that stops reading fills its socket buffer, then its queue, then
loses events, each counted (``kubeskoop.agent.event_stream.dropped``) and told to it when it reads
again. The number of clients is bounded (``eventStream.maxClients``); one more is told so and
closed.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_kubeskoop import __version__
from otel_kubeskoop.identity.keys import ResourceKey
from otel_kubeskoop.probe import Event, Sample
from otel_kubeskoop.telemetry.events import EventEmitter, event_record, probe_of
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0  # seconds a client has to say what it wants


@dataclass(frozen=True)
class Filters:
    """Which events a client wants; an empty field matches everything."""

    netns: int | None = None
    namespace: str | None = None
    pod: str | None = None
    probe: str | None = None
    type: str | None = None

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Filters:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        netns = raw.get("netns")
        return cls(int(netns) if netns is not None else None, raw.get("namespace"), raw.get("pod"),
                   raw.get("probe"), raw.get("type"))

    def accepts(self, event: Event, resource: Resource) -> bool:
        if self.netns is not None and event.netns != self.netns:
            return False
        attrs = resource.attributes
        if self.namespace is not None and attrs.get(A.K8S_NAMESPACE_NAME) != self.namespace:
            return False
        if self.pod is not None and attrs.get(A.K8S_POD_NAME) != self.pod:
            return False
        if self.probe is not None and probe_of(event) != self.probe:
            return False
        if self.type is not None and self.type not in (event.upstream_type, event.name, event.name.rsplit(".", 1)[-1]):
            return False
        return True


class Client:
    """One connected client: its bounded queue and the thread that writes it out."""

    def __init__(self, conn: socket.socket, mode: str, filters: Filters, queue_size: int,
                 on_close: Callable[[Client], None]) -> None:
        self.conn = conn
        self.mode = mode
        self.filters = filters
        self._queue: deque[Any] = deque()
        self._queue_size = queue_size
        self._wake = threading.Event()
        self._closed = False
        self._on_close = on_close
        self.dropped = 0
        self._told = 0
        self._thread = threading.Thread(target=self._run, name="kubeskoop-stream-client", daemon=True)

    def offer(self, item: Any) -> bool:
        """Queue ``item``; False (and counted) when the queue is full. Never blocks."""
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return False
        self._queue.append(item)
        self._wake.set()
        return True

    def _line(self, item: Any) -> bytes:
        if isinstance(item, tuple):
            event, resource = item
            item = {"event": event_record(event, resource)}
        return (json.dumps(item, separators=(",", ":"), default=str) + "\n").encode()

    def _run(self) -> None:
        try:
            while not self._closed:
                self._wake.wait(1.0)
                self._wake.clear()
                chunk = []
                if self.dropped != self._told:
                    lost, self._told = self.dropped - self._told, self.dropped
                    chunk.append(self._line({"lost": lost, "total_lost": self._told}))
                while self._queue and len(chunk) < 256:
                    chunk.append(self._line(self._queue.popleft()))
                if chunk:
                    self.conn.sendall(b"".join(chunk))
                    if self._queue:
                        self._wake.set()
                elif self._hung_up():
                    return
        except OSError:
            pass  # the client went away (or close() shut the socket): nothing to tell it
        finally:
            self.close()

    def _hung_up(self) -> bool:
        """Whether the client closed its socket: one that went away while nothing was sent to it
        must not keep its place among ``maxClients``. A unix socket reports POLLHUP once its peer
        has closed both ways; a client that only shut down its writing half (``nc -N``) still
        reads, and stays."""
        poller = select.poll()
        try:
            poller.register(self.conn, select.POLLIN)  # POLLHUP and POLLERR are always reported
        except ValueError:  # close() closed the socket meanwhile (its fd is -1)
            return True
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        try:
            self.conn.shutdown(socket.SHUT_RDWR)  # a blocked sendall returns
        except OSError:
            pass  # already disconnected
        self.conn.close()
        self._on_close(self)

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


def _serving(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class EventStream:
    """The unix socket server and the emitter hook."""

    def __init__(self, path: str, emitter: EventEmitter, summarize: Callable[[Mapping[ResourceKey, list[Sample]]], Any],
                 max_clients: int = 8, client_queue: int = 4096) -> None:
        """``summarize`` makes a cycle's summary for ``top`` from the samples by resource."""
        self.path = path
        self._emitter = emitter
        self._summarize = summarize
        self._max_clients = max_clients
        self._client_queue = client_queue
        self._lock = threading.Lock()
        self._events: tuple[Client, ...] = ()  # read by the hook without the lock
        self._tops: tuple[Client, ...] = ()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0  # by clients since gone, plus those of clients connected (samples())
        self.refused = 0

    def start(self) -> None:
        """Bind the socket (a failure is logged: the agent runs on without a stream)."""
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
            if os.path.exists(self.path):
                if _serving(self.path):
                    log.warning("live event stream off: another agent serves %s", self.path)
                    return
                os.unlink(self.path)  # left by an agent that did not stop cleanly
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            old_umask = os.umask(0o177)
            try:
                listener.bind(self.path)
            finally:
                os.umask(old_umask)
            listener.listen(16)
            listener.settimeout(0.5)
        except OSError as exc:
            log.warning("live event stream off: cannot listen on %s: %s", self.path, exc)
            return
        self._listener = listener
        self._emitter.hooks = (*self._emitter.hooks, self._hook)
        self._thread = threading.Thread(target=self._accept, name="kubeskoop-stream", daemon=True)
        self._thread.start()
        log.info("live event stream on %s", self.path)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._greet(conn)

    def _greet(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(HELLO_TIMEOUT)
            hello = json.loads(conn.makefile("rb").readline() or b"{}")
            mode = hello.get("mode", "events")
            if mode not in ("events", "top"):
                raise ValueError(f"unknown mode {mode!r} (events, top)")
            filters = Filters.of(hello.get("filters") or {})
            conn.settimeout(None)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self._refuse(conn, f"bad request: {exc}")
            return
        with self._lock:
            if len(self._events) + len(self._tops) >= self._max_clients:
                self.refused += 1
                full = True
            else:
                full = False
                client = Client(conn, mode, filters, self._client_queue, self._gone)
                if mode == "top":
                    self._tops = (*self._tops, client)
                else:
                    self._events = (*self._events, client)
        if full:
            self._refuse(conn, f"too many clients (eventStream.maxClients is {self._max_clients})")
            return
        client.offer({"hello": {"version": __version__, "mode": mode}})
        client.start()

    def _refuse(self, conn: socket.socket, why: str) -> None:
        try:
            conn.sendall((json.dumps({"error": why}) + "\n").encode())
        except OSError:
            pass  # it went away first: nothing to tell
        conn.close()

    def _gone(self, client: Client) -> None:
        with self._lock:
            self._events = tuple(c for c in self._events if c is not client)
            self._tops = tuple(c for c in self._tops if c is not client)
            self.dropped += client.dropped

    def _hook(self, event: Event, resource: Resource) -> None:
        for client in self._events:
            if client.filters.accepts(event, resource):
                client.offer((event, resource))

    def cycle(self, groups: Mapping[ResourceKey, list[Sample]]) -> None:
        """Send this cycle's summary to the ``top`` clients, if any."""
        if not self._tops:
            return
        message = {"cycle": self._summarize(groups)}
        for client in self._tops:
            client.offer(message)

    def samples(self) -> list[Sample]:
        clients = self._events + self._tops
        return [Sample(I.AGENT_STREAM_CLIENTS, len(clients)),
                Sample(I.AGENT_STREAM_DROPPED, self.dropped + sum(c.dropped for c in clients))]

    def stop(self) -> None:
        """Close every client and the socket. Idempotent."""
        self._stop.set()
        self._emitter.hooks = tuple(h for h in self._emitter.hooks if h != self._hook)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for client in self._events + self._tops:
            client.close()
            client.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if os.path.exists(self.path):
                os.unlink(self.path)
