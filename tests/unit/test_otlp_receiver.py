"""Tests for tests/otlp_receiver.py, driven by the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import gzip
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.otlp_receiver import LogRec, OTLPReceiver, Point

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ["grpc", "http"]


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch):
    # The exporters fall back to OTEL_EXPORTER_OTLP_* env vars; keep the tests hermetic.
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def rx():
    with OTLPReceiver() as receiver:
        yield receiver


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # ignore HTTP(S)_PROXY: the receiver is on 127.0.0.1
    return s


def metric_exporter(rx: OTLPReceiver, transport: str, **kw):
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=rx.grpc_endpoint, insecure=True, timeout=10, **kw)
    return HttpMetricExporter(endpoint=rx.http_endpoint + "/v1/metrics", timeout=10, session=_session(), **kw)


def log_exporter(rx: OTLPReceiver, transport: str, **kw):
    if transport == "grpc":
        return GrpcLogExporter(endpoint=rx.grpc_endpoint, insecure=True, timeout=10, **kw)
    return HttpLogExporter(endpoint=rx.http_endpoint + "/v1/logs", timeout=10, session=_session(), **kw)


class Pipeline:
    """MeterProvider with a manual-only reader (interval=inf: no background thread, and
    therefore no final export on shutdown; every request comes from an explicit flush)."""

    def __init__(self, exporter, resource: dict):
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
        self.provider = MeterProvider(resource=Resource(resource), metric_readers=[self.reader])
        self.meter = self.provider.get_meter("kubeskoop.test", "0.1")

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)

    def close(self) -> None:
        self.provider.shutdown()


RESOURCE = {"a": "1", "k8s.pod.name": "pod-x", "pid": 42, "ratio": 0.5, "up": True, "tags": ["x", "y"]}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metrics_roundtrip(rx: OTLPReceiver, transport: str) -> None:
    p = Pipeline(metric_exporter(rx, transport), RESOURCE)
    try:
        counter = p.meter.create_counter("kubeskoop.test.packets", unit="{packet}")
        counter.add(5, {"dir": "rx"})
        counter.add(2, {"dir": "rx"})
        counter.add(11, {"dir": "tx"})
        p.meter.create_up_down_counter("kubeskoop.test.conns").add(-3)
        p.meter.create_gauge("kubeskoop.test.temp", unit="Cel").set(21.5, {"zone": "a"})
        hist = p.meter.create_histogram("kubeskoop.test.latency", unit="ms", explicit_bucket_boundaries_advisory=[1, 10])
        for v in (0.5, 3, 3, 50):
            hist.record(v)
        p.flush()
    finally:
        p.close()

    rx.wait_metric_requests(1)
    other = "http" if transport == "grpc" else "grpc"
    assert rx.metric_requests(other) == []
    assert rx.request_counts()[transport] >= 1 and rx.request_counts()[other] == 0
    # Resource(...) (not Resource.create) adds no SDK defaults: exact equality, AnyValue decoded.
    assert rx.resources() == [RESOURCE]
    assert rx.resources(transport=other) == []

    assert rx.value("kubeskoop.test.packets", resource={"a": "1"}, attributes={"dir": "rx"}) == 7
    assert rx.value("kubeskoop.test.packets", attributes={"dir": "tx"}) == 11
    (pt,) = rx.points("kubeskoop.test.packets", attributes={"dir": "rx"})
    assert isinstance(pt, Point)
    assert (pt.kind, pt.is_monotonic, pt.temporality, pt.unit) == ("sum", True, "cumulative", "{packet}")
    assert pt.resource == RESOURCE and pt.attributes == {"dir": "rx"}
    assert isinstance(pt.value, int) and pt.time_unix_nano >= pt.start_time_unix_nano > 0
    assert pt.transport == transport and pt.scope_name == "kubeskoop.test"

    (udc,) = rx.points("kubeskoop.test.conns")
    assert (udc.value, udc.is_monotonic, udc.temporality) == (-3, False, "cumulative")

    (g,) = rx.points("kubeskoop.test.temp")
    assert (g.kind, g.value, g.is_monotonic, g.temporality, g.attributes) == ("gauge", 21.5, None, None, {"zone": "a"})

    (h,) = rx.points("kubeskoop.test.latency")
    assert (h.kind, h.count, h.sum, h.value) == ("histogram", 4, 56.5, None)
    assert h.explicit_bounds == (1.0, 10.0) and h.bucket_counts == (1, 2, 1)
    with pytest.raises(AssertionError, match="histogram"):
        rx.value("kubeskoop.test.latency")

    # filters are subset matches with type-strict equality
    assert rx.points("kubeskoop.test.packets", resource={"pid": 42, "up": True}, attributes={"dir": "tx"})
    assert rx.points("kubeskoop.test.packets", resource={"up": 1}) == []
    assert rx.points("kubeskoop.test.packets", resource={"a": "2"}) == []
    assert rx.points("kubeskoop.test.packets", transport=other) == []
    assert set(rx.metric_names()) == {
        "kubeskoop.test.packets",
        "kubeskoop.test.conns",
        "kubeskoop.test.temp",
        "kubeskoop.test.latency",
    }


def test_value_requires_exactly_one_series(rx: OTLPReceiver) -> None:
    pipes = [
        Pipeline(metric_exporter(rx, "grpc"), {"k8s.pod.name": "p1"}),
        Pipeline(metric_exporter(rx, "http"), {"k8s.pod.name": "p2"}),
    ]
    try:
        for i, p in enumerate(pipes):
            p.meter.create_counter("kubeskoop.test.drops").add(10 * (i + 1))
            p.flush()
    finally:
        for p in pipes:
            p.close()

    rx.wait_metric_requests(2)
    assert rx.value("kubeskoop.test.drops", resource={"k8s.pod.name": "p1"}) == 10
    assert rx.value("kubeskoop.test.drops", resource={"k8s.pod.name": "p2"}) == 20
    assert rx.value("kubeskoop.test.drops", resource={"k8s.pod.name": "p2"}, transport="http") == 20
    assert {r["k8s.pod.name"] for r in rx.resources()} == {"p1", "p2"}
    assert rx.resources(transport="grpc") == [{"k8s.pod.name": "p1"}]

    with pytest.raises(AssertionError) as many:
        rx.value("kubeskoop.test.drops")
    assert "2 series" in str(many.value) and "'p1'" in str(many.value) and "'p2'" in str(many.value)
    with pytest.raises(AssertionError) as none:
        rx.value("kubeskoop.test.drops", resource={"k8s.pod.name": "p3"})
    assert "no series" in str(none.value) and "'p1'" in str(none.value)
    with pytest.raises(AssertionError) as missing:
        rx.value("kubeskoop.test.nope")
    assert "never received" in str(missing.value) and "kubeskoop.test.drops" in str(missing.value)


def test_last_vs_all_points_and_arrival_metadata(rx: OTLPReceiver) -> None:
    p = Pipeline(metric_exporter(rx, "grpc"), {"a": "1"})
    try:
        c = p.meter.create_counter("kubeskoop.test.bytes")
        for v in (1, 2, 3):
            c.add(v, {"if": "eth0"})
            p.flush()
        c.add(100, {"if": "lo"})  # a new series only in the last request
        p.flush()
    finally:
        # with export_interval_millis=inf there is no reader thread, so shutdown does
        # NOT run a final collection: exactly the 4 flushes arrive
        p.close()

    reqs = rx.wait_metric_requests(4)
    assert len(reqs) == 4
    all_pts = rx.points("kubeskoop.test.bytes", attributes={"if": "eth0"}, last=False)
    assert [pt.value for pt in all_pts] == [1, 3, 6, 6]
    assert [pt.request_index for pt in all_pts] == sorted(pt.request_index for pt in all_pts)
    latest = rx.points("kubeskoop.test.bytes")
    assert sorted((pt.attributes["if"], pt.value) for pt in latest) == [("eth0", 6), ("lo", 100)]
    assert all(pt.request_index == len(reqs) - 1 for pt in latest)

    arrivals = [r.arrival for r in rx.received("metrics")]
    assert arrivals == sorted(arrivals) and all(r.transport == "grpc" for r in rx.received())
    assert rx.request_count("grpc", "metrics") == len(reqs)

    rx.clear()
    assert rx.metric_requests() == [] and rx.request_count() == 0 and rx.resources() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logs_roundtrip(rx: OTLPReceiver, transport: str) -> None:
    provider = LoggerProvider(resource=Resource({"a": "1", "k8s.node.name": "n1"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter(rx, transport)))
    try:
        logger = provider.get_logger("kubeskoop.events", "0.1")
        logger.emit(
            event_name="kubeskoop.test.synthetic",
            body={"msg": "hello", "n": 3},
            attributes={"netns.inode": 4026531840, "reason": "test", "flags": [1, 2]},
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
        )
        logger.emit(event_name="kubeskoop.test.other", body="second", severity_number=SeverityNumber.INFO)
    finally:
        provider.shutdown()

    rx.wait_log_requests(2)
    (rec,) = rx.log_records(event_name="kubeskoop.test.synthetic")
    assert isinstance(rec, LogRec)
    assert rec.resource == {"a": "1", "k8s.node.name": "n1"}
    assert rec.attributes == {"netns.inode": 4026531840, "reason": "test", "flags": [1, 2]}
    assert rec.body == {"msg": "hello", "n": 3}
    assert (rec.severity_number, rec.severity_text) == (SeverityNumber.WARN.value, "WARN")
    assert rec.scope_name == "kubeskoop.events" and rec.transport == transport
    assert rec.observed_time_unix_nano > 0
    assert [r.body for r in rx.log_records()] == [{"msg": "hello", "n": 3}, "second"]
    assert rx.log_records(resource={"k8s.node.name": "n2"}) == []
    assert rx.log_records(attributes={"reason": "test"}) == [rec]
    assert rx.log_records(transport="http" if transport == "grpc" else "grpc") == []
    assert rx.resources(signal="logs") == [{"a": "1", "k8s.node.name": "n1"}]
    assert rx.metric_requests() == []


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_http_compressed_exports(rx: OTLPReceiver, compression: Compression) -> None:
    p = Pipeline(metric_exporter(rx, "http", compression=compression), {"a": "1"})
    try:
        p.meter.create_counter("kubeskoop.test.gz").add(9)
        p.flush()
    finally:
        p.close()
    provider = LoggerProvider(resource=Resource({"a": "1"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter(rx, "http", compression=compression)))
    provider.get_logger("t").emit(event_name="kubeskoop.test.synthetic", body="zipped")
    provider.shutdown()

    assert rx.value("kubeskoop.test.gz", resource={"a": "1"}) == 9
    assert [r.body for r in rx.log_records("kubeskoop.test.synthetic")] == ["zipped"]
    assert rx.request_count(outcome="invalid") == 0


def test_grpc_gzip(rx: OTLPReceiver) -> None:
    from grpc import Compression as GrpcCompression

    p = Pipeline(metric_exporter(rx, "grpc", compression=GrpcCompression.Gzip), {"a": "1"})
    try:
        p.meter.create_counter("kubeskoop.test.gz").add(4)
        p.flush()
    finally:
        p.close()
    assert rx.value("kubeskoop.test.gz") == 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fail_next_then_sdk_retry_succeeds(rx: OTLPReceiver, transport: str) -> None:
    """Default SDK backoff (~0.8-1.2 s before the first retry)."""
    rx.fail_next(1, transport=transport)
    exporter = metric_exporter(rx, transport)
    p = Pipeline(exporter, {"a": "1"})
    try:
        p.meter.create_counter("kubeskoop.test.retry").add(3)
        t0 = time.monotonic()
        p.flush()
        elapsed = time.monotonic() - t0
    finally:
        exporter_requests_before_close = rx.request_count(transport)
        p.close()
    assert exporter_requests_before_close == 1  # the retry got through, exactly once
    assert rx.request_count(transport, outcome="injected") == 1
    assert 0.5 < elapsed < 5
    assert rx.value("kubeskoop.test.retry") == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fail_next_with_retry_after_hint(rx: OTLPReceiver, transport: str) -> None:
    """Retry-After (HTTP) / RetryInfo trailer (gRPC) override the SDK's backoff."""
    rx.fail_next(2, transport=transport, signal="metrics", retry_after=0.05)
    rx.fail_next(1, transport="http" if transport == "grpc" else "grpc")  # other transport: untouched here
    p = Pipeline(metric_exporter(rx, transport), {"a": "1"})
    try:
        p.meter.create_counter("kubeskoop.test.retry").add(1)
        t0 = time.monotonic()
        p.flush()
        elapsed = time.monotonic() - t0
    finally:
        p.close()
    assert rx.request_count(transport, "metrics", outcome="injected") == 2
    assert rx.request_count(transport, "metrics") >= 1
    assert elapsed < 0.7, elapsed
    assert rx.value("kubeskoop.test.retry") == 1


def _post(url: str, body: bytes, headers: dict[str, str], method: str = "POST"):
    req = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_http_protocol_details(rx: OTLPReceiver) -> None:
    pb = {"Content-Type": "application/x-protobuf"}
    req = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "a", "1"

    status, headers, body = _post(rx.http_endpoint + "/v1/metrics", req.SerializeToString(), pb)
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    metrics_service_pb2.ExportMetricsServiceResponse.FromString(body)  # a valid (empty) response

    status, _, body = _post(
        rx.http_endpoint + "/v1/logs",
        gzip.compress(logs_service_pb2.ExportLogsServiceRequest().SerializeToString()),
        {**pb, "Content-Encoding": "gzip"},
    )
    assert status == 200
    logs_service_pb2.ExportLogsServiceResponse.FromString(body)

    assert _post(rx.http_endpoint + "/v1/traces", b"", pb)[0] == 404
    assert _post(rx.http_endpoint + "/nope", b"x", pb)[0] == 404
    assert _post(rx.http_endpoint + "/v1/metrics", b"{}", {"Content-Type": "application/json"})[0] == 415
    assert _post(rx.http_endpoint + "/v1/metrics", b"\xff\xff\xff", pb)[0] == 400
    assert _post(rx.http_endpoint + "/v1/metrics", b"", pb, method="GET")[0] == 405

    rx.fail_next(1, "http", retry_after=2)
    status, headers, _ = _post(rx.http_endpoint + "/v1/metrics", req.SerializeToString(), pb)
    assert status == 503 and headers["Retry-After"] == "2"

    assert rx.resources() == [{"a": "1"}]
    assert rx.request_count("http", "metrics") == 1
    assert rx.request_count("http", outcome="invalid") == 2
    assert rx.request_count("http", outcome="injected") == 1
    assert len(rx.log_requests("http")) == 1


def test_wait_for(rx: OTLPReceiver) -> None:
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    rx.wait_for(flag.is_set, timeout=5)

    with pytest.raises(AssertionError, match=r"timed out after 0.2s waiting for >= 1 metric request"):
        rx.wait_metric_requests(1, timeout=0.2)
    # AssertionErrors from the predicate mean "not yet" and are reported on timeout
    with pytest.raises(AssertionError, match="never received") as e:
        rx.wait_for(lambda: rx.value("kubeskoop.test.x") == 1, timeout=0.2, description="x == 1")
    assert "waiting for x == 1" in str(e.value)

    # wakes up on arrival rather than sleeping the whole interval
    p = Pipeline(metric_exporter(rx, "grpc"), {"a": "1"})
    try:
        p.meter.create_counter("kubeskoop.test.x").add(1)
        threading.Timer(0.1, p.flush).start()
        rx.wait_for(lambda: rx.value("kubeskoop.test.x") == 1, timeout=5, interval=10)
    finally:
        time.sleep(0.05)
        p.close()


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_no_thread_leak() -> None:
    """Checked with grpcio 1.85.3: the only Python threads gRPC adds are the server's
    "Thread-N (_serve)" poller and our executor workers; all end on stop(). (gRPC's
    C-core threads are not Python threads and are invisible to threading.enumerate.)"""
    before = _thread_names()
    with OTLPReceiver() as receiver:
        during = _thread_names()
        for transport in TRANSPORTS:
            p = Pipeline(metric_exporter(receiver, transport), {"a": "1"})
            p.meter.create_counter("kubeskoop.test.t").add(1)
            p.flush()
            p.close()
            lp = LoggerProvider(resource=Resource({"a": "1"}))
            lp.add_log_record_processor(SimpleLogRecordProcessor(log_exporter(receiver, transport)))
            lp.get_logger("t").emit(event_name="kubeskoop.test.synthetic")
            lp.shutdown()
        # an HTTP exporter still holding a keep-alive connection when the receiver stops
        still_open = Pipeline(metric_exporter(receiver, "http"), {"a": "1"})
        still_open.meter.create_counter("kubeskoop.test.t").add(1)
        still_open.flush()
        assert any(n.startswith("otlp-receiver-http-conn") for n in _thread_names())
        # one metric request per flush (no final collect on shutdown) + one log request each
        assert receiver.request_counts() == {"grpc": 2, "http": 3}
        assert "otlp-receiver-http" in during
    leaked = _thread_names() - before
    still_open.close()
    assert not leaked, f"threads left after OTLPReceiver exit: {sorted(leaked)}"


def test_stop_is_idempotent_and_ports_are_released() -> None:
    rx = OTLPReceiver().start()
    grpc_port, http_port = rx.grpc_port, rx.http_port
    assert rx.grpc_endpoint == f"http://127.0.0.1:{grpc_port}" and rx.http_endpoint == f"http://127.0.0.1:{http_port}"
    assert grpc_port != http_port and grpc_port > 0
    rx.stop()
    rx.stop()
    # the same fixed ports can be bound again right away
    with OTLPReceiver(grpc_port=grpc_port, http_port=http_port) as again:
        assert (again.grpc_port, again.http_port) == (grpc_port, http_port)


def test_cli_prints_a_line_per_request_and_exits_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp_receiver", "--grpc-port", "0", "--http-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    try:
        banner = proc.stdout.readline()
        assert banner.startswith("OTLP receiver: grpc http://127.0.0.1:"), banner + proc.stderr.read()
        http_endpoint = banner.split()[-1]
        req = metrics_service_pb2.ExportMetricsServiceRequest()
        req.resource_metrics.add()
        status, _, _ = _post(http_endpoint + "/v1/metrics", req.SerializeToString(), {"Content-Type": "application/x-protobuf"})
        assert status == 200
        line = proc.stdout.readline()
        assert " http " in line and "metrics" in line and "resources=1" in line, line
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its threads' stacks (faulthandler) say where it hangs
            time.sleep(1)
            proc.kill()
            raise AssertionError(f"no exit 20 s after SIGTERM:\n{proc.communicate()[1][-4000:]}") from None
        assert proc.returncode == 0, err
        assert "stopped after" in out and "'http/metrics': 1" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
