# SPDX-License-Identifier: Apache-2.0
"""The HTTP server's bounds on loopback: connections past the cap answered 503 at once, idle and
slow clients cut off, aborted requests logged through logging without a traceback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from otel_kubeskoop.server import HTTPServer

BODY = b"x" * (16 << 20)  # larger than any socket buffer: writing it to a reset client fails
ROUTES = {"/x": lambda: (200, "text/plain", BODY)}


@pytest.fixture
def served() -> Iterator[HTTPServer]:
    srv = HTTPServer("127.0.0.1:0", ROUTES, max_connections=2, read_timeout=0.5, deadline=1.5)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def connect(srv: HTTPServer) -> socket.socket:
    host, port = srv.bound.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def request(srv: HTTPServer, path: str = "/x") -> bytes:
    with connect(srv) as c:
        c.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return b"".join(iter(lambda: c.recv(4096), b""))


def wait(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_connections_past_the_cap_are_answered_busy_at_once(served: HTTPServer) -> None:
    idle = [connect(served), connect(served)]  # both slots, sending nothing
    try:
        wait(lambda: served.status()["open"] == 2)
        t0 = time.monotonic()
        assert request(served).startswith(b"HTTP/1.0 503 Service Unavailable")
        assert time.monotonic() - t0 < 0.4  # not after the idle ones' timeout
        assert served.status()["rejected_busy"] == 1
    finally:
        for c in idle:
            c.close()


def test_idle_clients_are_cut_after_the_read_timeout_and_slots_come_back(served: HTTPServer) -> None:
    idle = [connect(served), connect(served)]
    try:
        for c in idle:  # the server closes them: recv sees the end
            assert c.recv(100) == b""
        wait(lambda: served.status()["open"] == 0)
        assert request(served).endswith(b"\r\n\r\n" + BODY)
    finally:
        for c in idle:
            c.close()


def test_a_client_dripping_bytes_is_cut_at_the_deadline(served: HTTPServer) -> None:
    with connect(served) as c:
        t0 = time.monotonic()
        with pytest.raises(OSError):  # a reset or a broken pipe once the server cut it
            while time.monotonic() - t0 < 5:
                c.sendall(b"G")  # one byte well within each read timeout
                time.sleep(0.2)
        assert 1.5 <= time.monotonic() - t0 < 3.0
    assert served.status()["cut_at_deadline"] == 1


def test_aborted_requests_go_to_the_log_without_a_traceback(
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    served = HTTPServer("127.0.0.1:0", ROUTES)
    served.start()
    with caplog.at_level(logging.DEBUG, logger="otel_kubeskoop.server"):
        for _ in range(20):
            c = connect(served)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close
            c.sendall(b"GET /x HTTP/1.0\r\n\r\n")
            c.close()
        wait(lambda: served.status()["handled"] == 20)
    served.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and err == ""
    assert served.status()["failed"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    failed_writes = [r for r in caplog.records
                     if "ConnectionResetError" in r.getMessage() or "BrokenPipeError" in r.getMessage()]
    assert len(failed_writes) == 20 and {r.levelno for r in failed_writes} == {logging.DEBUG}
