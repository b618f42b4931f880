"""A real, in-process OTLP receiver for tests (gRPC and OTLP/HTTP protobuf).

Built on the official service definitions shipped in ``opentelemetry-proto``
(``opentelemetry.proto.collector.{metrics,logs}.v1``), so whatever the agent's
SDK exporters put on the wire is decoded exactly as a collector would.

Typical use::

    with OTLPReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.grpc_endpoint}
        ...  # start the agent / exporter
        rx.wait_for(lambda: rx.value("kubeskoop.tcp.retrans", resource={"k8s.pod.name": "p"}) == 3)
        assert rx.points("kubeskoop.tcp.retrans")[0].is_monotonic

Notes on semantics:

* Only requests that were *accepted* are stored. Requests rejected by
  :meth:`OTLPReceiver.fail_next` (or malformed ones) are only counted, so an
  exporter retry does not produce duplicates.
* ``request_index`` (on :class:`Point`) is the 0-based index of the request in
  ``rx.metric_requests()`` (all transports, arrival order), regardless of any
  ``transport`` filter. :meth:`OTLPReceiver.clear` resets it.
* ``last=True`` in :meth:`OTLPReceiver.points` is per series: for every
  (resource, point attributes) identity it returns the point(s) from the most
  recent request that carried that series. A series that stopped being
  exported keeps its last point. For delta temporality this is the last delta,
  not a total.

CLI (foreground, one summary line per request)::

    python -m tests.otlp_receiver --grpc-port 4317 --http-port 4318
"""

from __future__ import annotations

import argparse
import faulthandler
import gzip
import http.server
import logging
import signal as _signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

__all__ = ["LogRec", "OTLPReceiver", "Point", "Received"]

_log = logging.getLogger(__name__)

Transport = Literal["grpc", "http"]
Signal = Literal["metrics", "logs"]

ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest
ExportLogsServiceRequest = logs_service_pb2.ExportLogsServiceRequest

_TRANSPORTS = ("grpc", "http")
_SIGNALS = ("metrics", "logs")
# Matches the SDK exporters' default max_request_size (64 MiB); gRPC's default is 4 MiB.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_HTTP_PATHS: dict[str, Signal] = {"/v1/metrics": "metrics", "/v1/logs": "logs"}
_PROTOBUF = "application/x-protobuf"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Received:
    """One accepted export request."""

    signal: Signal
    transport: Transport
    arrival: float  # time.monotonic() at arrival
    request: Any  # ExportMetricsServiceRequest | ExportLogsServiceRequest
    index: int  # 0-based index among accepted requests of this signal (all transports)


@dataclass(frozen=True)
class Point:
    """One decoded metric data point (plain Python data)."""

    resource: dict[str, object]
    attributes: dict[str, object]
    value: int | float | None  # None for histograms / unset number points
    start_time_unix_nano: int
    time_unix_nano: int
    kind: str  # "sum" | "gauge" | "histogram" (also "exponential_histogram" | "summary")
    is_monotonic: bool | None  # only for kind == "sum"
    temporality: str | None  # "cumulative" | "delta" | None (gauge/summary/unspecified)
    count: int | None  # histogram-like kinds only
    sum: float | None  # histogram-like kinds only (None if not set)
    bucket_counts: tuple[int, ...]
    explicit_bounds: tuple[float, ...]
    unit: str
    request_index: int
    # extras (not part of a series identity)
    name: str = ""
    scope_name: str = ""
    transport: str = ""


@dataclass(frozen=True)
class LogRec:
    """One decoded log record (plain Python data)."""

    resource: dict[str, object]
    event_name: str
    severity_number: int
    severity_text: str
    body: object
    attributes: dict[str, object]
    time_unix_nano: int
    observed_time_unix_nano: int
    scope_name: str
    # extras
    request_index: int = -1
    transport: str = ""


# ----------------------------------------------------------------------- decoding


def decode_any_value(v: common_pb2.AnyValue) -> object:
    """AnyValue -> str/int/float/bool/bytes/list/dict (None when unset)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: decode_any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def decode_attributes(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, object]:
    return {kv.key: decode_any_value(kv.value) for kv in kvs}


def _freeze(o: object) -> object:
    """Hashable, type-tagged form of decoded data (True and 1 stay distinct)."""
    if isinstance(o, Mapping):
        return ("d", tuple(sorted((str(k), _freeze(v)) for k, v in o.items())))
    if isinstance(o, list | tuple):
        return ("l", tuple(_freeze(x) for x in o))
    if isinstance(o, bool):
        return ("b", o)
    if isinstance(o, int | float):
        return ("n", o)
    return (type(o).__name__, o)


def _values_equal(actual: object, wanted: object) -> bool:
    if isinstance(actual, bool) != isinstance(wanted, bool):
        return False
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and _subset(actual, wanted) and len(actual) == len(wanted)
    if isinstance(wanted, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(wanted)
            and all(_values_equal(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return actual == wanted


def _subset(actual: Mapping[str, object], wanted: Mapping[str, object] | None) -> bool:
    if not wanted:
        return True
    return all(k in actual and _values_equal(actual[k], v) for k, v in wanted.items())


_TEMPORALITY = {
    metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
}


def _decode_metric(
    metric: metrics_pb2.Metric,
    resource: dict[str, object],
    scope_name: str,
    request_index: int,
    transport: str,
) -> list[Point]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    data = getattr(metric, kind)
    temporality = _TEMPORALITY.get(getattr(data, "aggregation_temporality", 0))
    is_monotonic = data.is_monotonic if kind == "sum" else None
    common = dict(
        resource=resource,
        kind=kind,
        is_monotonic=is_monotonic,
        temporality=temporality,
        unit=metric.unit,
        request_index=request_index,
        name=metric.name,
        scope_name=scope_name,
        transport=transport,
    )
    out: list[Point] = []
    for dp in data.data_points:
        value: int | float | None = None
        count = total = None
        buckets: tuple[int, ...] = ()
        bounds: tuple[float, ...] = ()
        if kind in ("sum", "gauge"):
            which = dp.WhichOneof("value")
            value = getattr(dp, which) if which else None
        else:
            count = dp.count
            total = dp.sum if (kind == "summary" or dp.HasField("sum")) else None
            if kind == "histogram":
                buckets = tuple(dp.bucket_counts)
                bounds = tuple(dp.explicit_bounds)
        out.append(
            Point(
                attributes=decode_attributes(dp.attributes),
                value=value,
                start_time_unix_nano=dp.start_time_unix_nano,
                time_unix_nano=dp.time_unix_nano,
                count=count,
                sum=total,
                bucket_counts=buckets,
                explicit_bounds=bounds,
                **common,  # type: ignore[arg-type]
            )
        )
    return out


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)  # zlib-wrapped, what the SDK sends
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# ------------------------------------------------------------------------- errors


class _Rejected(Exception):
    def __init__(self, http_status: int, grpc_code: grpc.StatusCode, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.message = message
        self.retry_after = retry_after


# ---------------------------------------------------------------------- gRPC side


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, rx: OTLPReceiver) -> None:
        self._rx = rx

    def Export(self, request, context):  # noqa: N802 (generated name)
        self._rx._grpc_ingest("metrics", request, context)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, rx: OTLPReceiver) -> None:
        self._rx = rx

    def Export(self, request, context):  # noqa: N802
        self._rx._grpc_ingest("logs", request, context)
        return logs_service_pb2.ExportLogsServiceResponse()


# ---------------------------------------------------------------------- HTTP side


class _HTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connection threads so stop() can end them.

    The SDK's requests session keeps connections alive; without this, handler
    threads would sit in readline() after the server is stopped.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], rx: OTLPReceiver) -> None:
        self.rx = rx
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._conn_seq = 0
        self.stopping = False
        super().__init__(addr, _HTTPHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds in sandboxes; it is only used for the (unused) server_name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):  # called on the serve_forever thread
        with self._conns_lock:
            self._conn_seq += 1
            t = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"otlp-receiver-http-conn-{self._conn_seq}",
                daemon=True,
            )
            self._conns[request] = t
        t.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(request, None)

    def handle_error(self, request, client_address):
        if not self.stopping:
            _log.exception("otlp receiver: error handling HTTP connection from %s", client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        with self._conns_lock:
            items = list(self._conns.items())
        for sock, _ in items:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, t in items:
            t.join(max(0.0, deadline - time.monotonic()))


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real collector
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        _log.debug("otlp receiver http: " + format, *args)

    def _reply(self, status: int, body: bytes = b"", content_type: str = _PROTOBUF, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _reply_status(self, status: int, code: int, message: str, headers=()) -> None:
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        self._reply(status, body, headers=headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        signal = _HTTP_PATHS.get(path)
        body = self._read_body()  # always drain, so keep-alive stays in sync
        if signal is None:
            self._reply(404, b"not found\n", "text/plain")
            return
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != _PROTOBUF:
            self.server.rx._count("http", signal, "invalid")
            self._reply_status(415, 3, f"unsupported Content-Type {ctype!r}; only {_PROTOBUF}")
            return
        try:
            raw = _decompress(body, self.headers.get("Content-Encoding", ""))
        except (OSError, EOFError, zlib.error, ValueError) as e:
            self.server.rx._count("http", signal, "invalid")
            self._reply_status(400, 3, f"cannot decompress body: {e}")
            return
        req_cls = ExportMetricsServiceRequest if signal == "metrics" else ExportLogsServiceRequest
        try:
            request = req_cls.FromString(raw)
        except DecodeError as e:
            self.server.rx._count("http", signal, "invalid")
            self._reply_status(400, 3, f"cannot decode {req_cls.__name__}: {e}")
            return
        try:
            self.server.rx._ingest(signal, "http", request)
        except _Rejected as r:
            headers = [("Retry-After", f"{r.retry_after:g}")] if r.retry_after is not None else []
            self._reply_status(r.http_status, r.grpc_code.value[0], r.message, headers)
            return
        resp_cls = (
            metrics_service_pb2.ExportMetricsServiceResponse
            if signal == "metrics"
            else logs_service_pb2.ExportLogsServiceResponse
        )
        self._reply(200, resp_cls().SerializeToString())

    def _not_found(self) -> None:
        self._read_body()
        if self.path.split("?", 1)[0] in _HTTP_PATHS:
            self._reply(405, b"", "text/plain", headers=[("Allow", "POST")])
        else:
            self._reply(404, b"not found\n", "text/plain")

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_found  # noqa: N815


# ----------------------------------------------------------------------- receiver


class OTLPReceiver:
    """In-process OTLP receiver serving gRPC and OTLP/HTTP (protobuf) on 127.0.0.1.

    Ports default to 0 (ephemeral). Use as a context manager, or call
    :meth:`start` / :meth:`stop`. ``on_request`` (optional) is called with a
    :class:`Received` after every accepted request, outside the lock, on the
    server thread that handled it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        *,
        max_workers: int = 4,
        on_request: Callable[[Received], None] | None = None,
    ) -> None:
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self._max_workers = max_workers
        self._on_request = on_request
        self._cond = threading.Condition(threading.Lock())
        self._received: list[Received] = []
        self._next_index = {"metrics": 0, "logs": 0}
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._fail_budget: dict[tuple[str | None, str | None], list] = {}
        self._grpc_server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._httpd: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def grpc_endpoint(self) -> str:
        """``http://host:port``: what OTEL_EXPORTER_OTLP_ENDPOINT takes for gRPC (insecure)."""
        return f"http://{self.host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://host:port`` base URL; the HTTP exporters need ``+ "/v1/metrics"`` when
        passed as ``endpoint=`` (only the OTEL_EXPORTER_OTLP_ENDPOINT env var gets the
        signal path appended)."""
        return f"http://{self.host}:{self.http_port}"

    def start(self) -> OTLPReceiver:
        if self._grpc_server is not None:
            raise RuntimeError("OTLPReceiver already started")
        try:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="otlp-receiver-grpc"
            )
            server = grpc.server(
                self._executor,
                options=[
                    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                    ("grpc.so_reuseport", 0),
                ],
            )
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), server)
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), server)
            port = server.add_insecure_port(f"{self.host}:{self.grpc_port}")
            if port == 0:
                raise RuntimeError(f"could not bind gRPC port {self.host}:{self.grpc_port}")
            self.grpc_port = port
            self._grpc_server = server
            server.start()

            self._httpd = _HTTPServer((self.host, self.http_port), self)
            self.http_port = self._httpd.server_address[1]
            self._http_thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="otlp-receiver-http",
                daemon=True,
            )
            self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers and join their threads. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stopping = True
            if self._http_thread is not None and self._http_thread.is_alive():
                httpd.shutdown()
            httpd.close_connections()
            httpd.server_close()
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None
        server, self._grpc_server = self._grpc_server, None
        if server is not None:
            server.stop(grace=None).wait(5)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"OTLPReceiver(grpc={self.grpc_endpoint}, http={self.http_endpoint}, "
            f"metric_requests={len(self._snapshot('metrics'))}, log_requests={len(self._snapshot('logs'))})"
        )

    # ---------------------------------------------------------------- ingestion

    def _count(self, transport: str, signal: str, outcome: str) -> None:
        with self._cond:
            self._counts[(transport, signal, outcome)] += 1

    def _ingest(self, signal: Signal, transport: Transport, request: Any) -> Received:
        with self._cond:
            for key in ((transport, signal), (transport, None), (None, signal), (None, None)):
                budget = self._fail_budget.get(key)
                if budget and budget[0] > 0:
                    budget[0] -= 1
                    if budget[0] == 0:
                        del self._fail_budget[key]
                    self._counts[(transport, signal, "injected")] += 1
                    raise _Rejected(503, grpc.StatusCode.UNAVAILABLE, "injected failure (fail_next)", budget[1])
            rec = Received(signal, transport, time.monotonic(), request, self._next_index[signal])
            self._next_index[signal] += 1
            self._received.append(rec)
            self._counts[(transport, signal, "ok")] += 1
            self._cond.notify_all()
        if self._on_request is not None:
            try:
                self._on_request(rec)
            except Exception:  # noqa: BLE001
                _log.exception("otlp receiver: on_request callback failed")
        return rec

    def _grpc_ingest(self, signal: Signal, request: Any, context: grpc.ServicerContext) -> None:
        try:
            self._ingest(signal, "grpc", request)
        except _Rejected as r:
            if r.retry_after is not None:
                delay = Duration()
                delay.FromNanoseconds(int(r.retry_after * 1e9))
                info = error_details_pb2.RetryInfo(retry_delay=delay)
                context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
            context.abort(r.grpc_code, r.message)

    # ---------------------------------------------------------- fault injection

    def fail_next(
        self,
        n: int = 1,
        transport: Transport | None = None,
        *,
        signal: Signal | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Reject the next ``n`` requests on ``transport`` (None: either transport),
        optionally only for ``signal``, with HTTP 503 / gRPC UNAVAILABLE.

        ``retry_after`` (seconds) is sent as ``Retry-After`` (HTTP) or as a
        ``google.rpc.RetryInfo`` trailer (gRPC); the 1.45.2 SDK exporters honour
        both instead of their own exponential backoff (~1 s, 2 s, ...).
        Calling again for the same (transport, signal) replaces the budget.
        """
        if transport not in (None, *_TRANSPORTS):
            raise ValueError(f"transport must be 'grpc', 'http' or None, not {transport!r}")
        if signal not in (None, *_SIGNALS):
            raise ValueError(f"signal must be 'metrics', 'logs' or None, not {signal!r}")
        with self._cond:
            if n > 0:
                self._fail_budget[(transport, signal)] = [n, retry_after]
            else:
                self._fail_budget.pop((transport, signal), None)

    # ----------------------------------------------------------------- queries

    def _snapshot(self, signal: str | None = None, transport: str | None = None) -> list[Received]:
        with self._cond:
            items = list(self._received)
        return [
            r for r in items if (signal is None or r.signal == signal) and (transport is None or r.transport == transport)
        ]

    def received(self, signal: Signal | None = None, transport: Transport | None = None) -> list[Received]:
        """Accepted requests with their transport and monotonic arrival time, in arrival order."""
        return self._snapshot(signal, transport)

    def metric_requests(self, transport: Transport | None = None) -> list[ExportMetricsServiceRequest]:
        return [r.request for r in self._snapshot("metrics", transport)]

    def log_requests(self, transport: Transport | None = None) -> list[ExportLogsServiceRequest]:
        return [r.request for r in self._snapshot("logs", transport)]

    def request_count(
        self,
        transport: Transport | None = None,
        signal: Signal | None = None,
        outcome: Literal["ok", "injected", "invalid"] | None = "ok",
    ) -> int:
        """Requests seen since start/clear. ``outcome``: "ok" (accepted, the default),
        "injected" (rejected by fail_next), "invalid" (undecodable), None (all)."""
        with self._cond:
            return sum(
                c
                for (t, s, o), c in self._counts.items()
                if (transport is None or t == transport)
                and (signal is None or s == signal)
                and (outcome is None or o == outcome)
            )

    def request_counts(self) -> dict[str, int]:
        """Accepted requests per transport, e.g. ``{"grpc": 3, "http": 1}``."""
        return {t: self.request_count(t) for t in _TRANSPORTS}

    def resources(self, transport: Transport | None = None, signal: Signal = "metrics") -> list[dict[str, object]]:
        """Distinct resource attribute dicts (first-seen order) in ``signal`` requests."""
        seen: dict[object, dict[str, object]] = {}
        for r in self._snapshot(signal, transport):
            groups = r.request.resource_metrics if signal == "metrics" else r.request.resource_logs
            for g in groups:
                res = decode_attributes(g.resource.attributes)
                seen.setdefault(_freeze(res), res)
        return list(seen.values())

    def metric_names(self, transport: Transport | None = None) -> list[str]:
        """Distinct metric names seen (first-seen order)."""
        names: dict[str, None] = {}
        for req in self.metric_requests(transport):
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        names.setdefault(m.name, None)
        return list(names)

    def _all_points(self, metric_name: str | None, transport: str | None) -> list[Point]:
        out: list[Point] = []
        for r in self._snapshot("metrics", transport):
            for rm in r.request.resource_metrics:
                resource: dict[str, object] | None = None
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if metric_name is not None and m.name != metric_name:
                            continue
                        if resource is None:
                            resource = decode_attributes(rm.resource.attributes)
                        out.extend(_decode_metric(m, resource, sm.scope.name, r.index, r.transport))
        return out

    def points(
        self,
        metric_name: str,
        *,
        resource: Mapping[str, object] | None = None,
        transport: Transport | None = None,
        attributes: Mapping[str, object] | None = None,
        last: bool = True,
    ) -> list[Point]:
        """Data points of ``metric_name``; ``resource``/``attributes`` are subset matches.

        ``last=True``: per (resource, attributes) series, only the point(s) from the
        most recent request carrying that series. ``last=False``: all, arrival order.
        """
        pts = [
            p
            for p in self._all_points(metric_name, transport)
            if _subset(p.resource, resource) and _subset(p.attributes, attributes)
        ]
        if not last:
            return pts
        latest: dict[object, int] = {}
        for p in pts:
            latest[(_freeze(p.resource), _freeze(p.attributes))] = p.request_index
        return [p for p in pts if latest[(_freeze(p.resource), _freeze(p.attributes))] == p.request_index]

    def value(
        self,
        metric_name: str,
        resource: Mapping[str, object] | None = None,
        attributes: Mapping[str, object] | None = None,
        *,
        transport: Transport | None = None,
    ) -> int | float:
        """Latest value of exactly one matching (number) series, else AssertionError."""
        pts = self.points(metric_name, resource=resource, attributes=attributes, transport=transport, last=True)
        if len(pts) != 1:
            what = "no series" if not pts else f"{len(pts)} series"
            raise AssertionError(
                f"{what} of metric {metric_name!r} match resource={dict(resource or {})!r} "
                f"attributes={dict(attributes or {})!r} (transport={transport!r}); expected exactly one.\n"
                + self.describe_series(metric_name, transport=transport)
            )
        p = pts[0]
        if p.value is None:
            raise AssertionError(
                f"metric {metric_name!r} series {p.attributes!r} is a {p.kind} point without a number "
                "value; use rx.points() and read count/sum/bucket_counts"
            )
        return p.value

    def describe_series(self, metric_name: str | None = None, *, transport: Transport | None = None, limit: int = 60) -> str:
        """Human-readable listing of the latest point per series (for assertion messages)."""
        if metric_name is not None:
            pts = self.points(metric_name, transport=transport, last=True)
            header = f"series of {metric_name!r} seen ({len(pts)}):"
        else:
            pts = []
            for name in self.metric_names(transport):
                pts.extend(self.points(name, transport=transport, last=True))
            header = f"all series seen ({len(pts)}):"
        if not pts:
            names = self.metric_names(transport)
            return (
                f"metric {metric_name!r} never received; "
                f"{len(self.metric_requests(transport))} metric request(s), metric names seen: {names!r}"
            )
        lines = [header]
        for p in pts[:limit]:
            shown = p.value if p.kind in ("sum", "gauge") else f"count={p.count} sum={p.sum}"
            lines.append(
                f"  - {p.name} resource={p.resource!r} attributes={p.attributes!r} "
                f"{p.kind} value={shown} (request #{p.request_index}, {p.transport})"
            )
        if len(pts) > limit:
            lines.append(f"  ... and {len(pts) - limit} more")
        return "\n".join(lines)

    def log_records(
        self,
        event_name: str | None = None,
        resource: Mapping[str, object] | None = None,
        transport: Transport | None = None,
        *,
        attributes: Mapping[str, object] | None = None,
    ) -> list[LogRec]:
        """Decoded log records in arrival order; ``resource``/``attributes`` are subset matches."""
        out: list[LogRec] = []
        for r in self._snapshot("logs", transport):
            for rl in r.request.resource_logs:
                res = decode_attributes(rl.resource.attributes)
                if not _subset(res, resource):
                    continue
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        if event_name is not None and lr.event_name != event_name:
                            continue
                        attrs = decode_attributes(lr.attributes)
                        if not _subset(attrs, attributes):
                            continue
                        out.append(
                            LogRec(
                                resource=res,
                                event_name=lr.event_name,
                                severity_number=int(lr.severity_number),
                                severity_text=lr.severity_text,
                                body=decode_any_value(lr.body),
                                attributes=attrs,
                                time_unix_nano=lr.time_unix_nano,
                                observed_time_unix_nano=lr.observed_time_unix_nano,
                                scope_name=sl.scope.name,
                                request_index=r.index,
                                transport=r.transport,
                            )
                        )
        return out

    # ------------------------------------------------------------------ waiting

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,
        interval: float = 0.05,
        description: str | None = None,
    ) -> None:
        """Poll ``predicate`` until true (re-checked early whenever a request arrives).

        An AssertionError raised by the predicate (e.g. from :meth:`value` while the
        series does not exist yet) counts as "not yet"; the last one is reported.
        """
        deadline = time.monotonic() + timeout
        last_error: AssertionError | None = None
        while True:
            try:
                if predicate():
                    return
                last_error = None
            except AssertionError as e:
                last_error = e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                self._cond.wait(min(interval, remaining))
        what = description or getattr(predicate, "__qualname__", repr(predicate))
        counts = {
            f"{t}/{s}": self.request_count(t, s) for t in _TRANSPORTS for s in _SIGNALS
        }
        msg = f"timed out after {timeout:g}s waiting for {what}; accepted requests: {counts}"
        if last_error is not None:
            msg += f"\nlast predicate error: {last_error}"
        raise AssertionError(msg)

    def wait_metric_requests(
        self, n: int = 1, timeout: float = 10.0, transport: Transport | None = None
    ) -> list[ExportMetricsServiceRequest]:
        """Wait until at least ``n`` metric requests were accepted; return them all."""
        self.wait_for(
            lambda: len(self._snapshot("metrics", transport)) >= n,
            timeout,
            description=f">= {n} metric request(s) (transport={transport!r})",
        )
        return self.metric_requests(transport)

    def wait_log_requests(
        self, n: int = 1, timeout: float = 10.0, transport: Transport | None = None
    ) -> list[ExportLogsServiceRequest]:
        self.wait_for(
            lambda: len(self._snapshot("logs", transport)) >= n,
            timeout,
            description=f">= {n} log request(s) (transport={transport!r})",
        )
        return self.log_requests(transport)

    def clear(self) -> None:
        """Drop stored requests and reset counters/indices (pending fail_next budgets stay)."""
        with self._cond:
            self._received.clear()
            self._counts.clear()
            self._next_index = {"metrics": 0, "logs": 0}


# ---------------------------------------------------------------------------- CLI


def _summarize(rec: Received) -> str:
    req = rec.request
    size = req.ByteSize()
    if rec.signal == "metrics":
        groups = req.resource_metrics
        n_metrics = n_points = 0
        for rm in groups:
            for sm in rm.scope_metrics:
                n_metrics += len(sm.metrics)
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind:
                        n_points += len(getattr(m, kind).data_points)
        detail = f"metrics={n_metrics} points={n_points}"
    else:
        groups = req.resource_logs
        n_records = sum(len(sl.log_records) for rl in groups for sl in rl.scope_logs)
        events = Counter(
            lr.event_name or "-" for rl in groups for sl in rl.scope_logs for lr in sl.log_records
        )
        detail = f"records={n_records} events={dict(events)}"
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    return (
        f"{stamp} {rec.transport:<4} {rec.signal:<7} #{rec.index:<5} "
        f"resources={len(groups)} {detail} bytes={size}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.otlp_receiver", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--grpc-port", type=int, default=4317, help="0 = ephemeral (default 4317)")
    ap.add_argument("--http-port", type=int, default=4318, help="0 = ephemeral (default 4318)")
    ap.add_argument("--quiet", action="store_true", help="no per-request lines, only the final totals")
    args = ap.parse_args(argv)

    stop = threading.Event()

    def on_request(rec: Received) -> None:
        if not args.quiet:
            print(_summarize(rec), flush=True)
        # the receiver is a sink: don't keep everything forever in long benchmark runs
        with rx._cond:
            if len(rx._received) > 1000:
                del rx._received[:-1000]

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    stopping = {_signal.SIGINT, _signal.SIGTERM}
    faulthandler.register(_signal.SIGUSR1)  # every thread's stack, for a caller that waited too long
    # The server threads inherit the blocked mask, so the main thread alone takes the signals.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, stopping)
    rx = OTLPReceiver(args.host, args.grpc_port, args.http_port, on_request=on_request)
    old = {s: _signal.signal(s, on_signal) for s in stopping}
    started = time.monotonic()
    try:
        with rx:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, stopping)
            print(f"OTLP receiver: grpc {rx.grpc_endpoint}  http {rx.http_endpoint}", flush=True)
            while not stop.wait(0.5):
                pass
            elapsed = time.monotonic() - started
            totals = {f"{t}/{s}": rx.request_count(t, s) for t in _TRANSPORTS for s in _SIGNALS}
            rejected = rx.request_count(outcome="invalid") + rx.request_count(outcome="injected")
        print(f"stopped after {elapsed:.1f}s; accepted {totals}; rejected {rejected}", flush=True)
    finally:
        for s, h in old.items():
            _signal.signal(s, h)
    return 0


if __name__ == "__main__":
    sys.exit(main())
