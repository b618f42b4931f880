# SPDX-License-Identifier: Apache-2.0
"""The metric export thread: exports never hold the caller, each has a deadline, a cycle that ends
while one runs is counted as skipped, and the final export is cut at the shutdown deadline."""

from __future__ import annotations

import threading
import time

from otel_kubeskoop.telemetry.sender import MetricSender


class SlowPipeline:
    """Each export waits until released (or its deadline) and records the deadline it was given."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.release = threading.Event()
        self.last_error = ""

    def export(self, deadline: float | None = None) -> bool:
        self.deadlines.append(deadline)
        if not self.release.wait(max(0.0, deadline - time.monotonic())):
            self.last_error = "timed out"
            return False
        return True


def test_offers_never_wait_and_busy_ones_are_counted_skipped():
    pipeline = SlowPipeline()
    sender = MetricSender(pipeline, budget=5.0)
    t0 = time.monotonic()
    for _ in range(4):
        sender.offer()
    assert time.monotonic() - t0 < 0.5
    assert sender.counts["skipped"] == 3 and sender.status()["state"] == "exporting"
    end = time.monotonic() + 5
    while not pipeline.deadlines and time.monotonic() < end:
        time.sleep(0.01)
    assert 4.5 < pipeline.deadlines[0] - t0 <= 5.1, "the export's deadline is its budget"
    pipeline.release.set()
    assert sender.flush(5) and sender.counts["delivered"] == 2 and sender.status()["state"] == "ok"
    assert sender.flush(5) and len(pipeline.deadlines) == 2, "the last cycle was exported: no export again"


def test_the_final_export_is_cut_at_the_shutdown_deadline():
    pipeline = SlowPipeline()
    sender = MetricSender(pipeline, budget=60.0)
    sender.offer()  # in flight, for up to 60 s
    t0 = time.monotonic()
    assert not sender.close(t0 + 0.5)
    assert time.monotonic() - t0 < 1.0
    assert sender.counts["abandoned"] == 1 and "deadline" in sender.last_error


def test_a_failed_export_keeps_its_reason():
    pipeline = SlowPipeline()
    sender = MetricSender(pipeline, budget=0.2)
    assert not sender.flush(5) and not pipeline.deadlines, "nothing handed over, nothing exported"
    sender.offer()
    assert not sender.flush(5)
    assert sender.status() | {"last_delivered_unix": None} == {
        "state": "failing", "exports": {"failed": 1}, "last_error": "timed out", "last_delivered_unix": None}
    assert sender.close(time.monotonic() + 1) is False
