# SPDX-License-Identifier: Apache-2.0
"""An OTLP/HTTP sink for bench/event_path.py that counts the log records it receives.

It parses every logs request with the official messages (``opentelemetry-proto``; the C parser
of the protobuf runtime) and counts its log records by ``event_name``, so what the bench calls
delivered is what a collector would have received; metrics requests are accepted unread.
``GET /count`` answers the counts so far and this process's CPU seconds as JSON.

    python bench/log_counter.py PORT
"""

from __future__ import annotations

import gzip
import json
import resource
import sys
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

LOGS_PATH = "/v1/logs"
_DECOMPRESS = {"gzip": gzip.decompress, "deflate": zlib.decompress}
_lock = threading.Lock()
_records: Counter[str] = Counter()
_requests: Counter[str] = Counter()


def count(body: bytes) -> Counter[str]:
    """Log records of one encoded ``ExportLogsServiceRequest``, by ``event_name``."""
    out: Counter[str] = Counter()
    for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
        for scope_logs in resource_logs.scope_logs:
            out.update(record.event_name for record in scope_logs.log_records)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter's session reuses its connection

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding")
        if encoding in _DECOMPRESS:
            body = _DECOMPRESS[encoding](body)
        if self.path == LOGS_PATH:
            got = count(body)
            with _lock:
                _records.update(got)
                _requests["logs"] += 1
            self._answer(ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf")
        else:
            with _lock:
                _requests["other"] += 1
            self._answer(b"", "application/x-protobuf")

    def do_GET(self) -> None:  # noqa: N802
        ru = resource.getrusage(resource.RUSAGE_SELF)
        with _lock:
            state = {"records": dict(_records), "requests": dict(_requests),
                     "cpu_seconds": ru.ru_utime + ru.ru_stime}
        self._answer(json.dumps(state).encode(), "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        """Quiet: one line per request would cost more than the counting."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
