# SPDX-License-Identifier: Apache-2.0
"""The metric export thread: collection hands over each cycle's state and goes on; this thread
sends the latest state, so a slow or black-holed backend never delays collection, ``/metrics`` or
``/status``.

An export (all its requests, each with the SDK's retries and backoff) ends by its deadline,
``budget`` seconds after it starts (the agent gives the longer of the interval and the exporter's
timeout), so one export never runs into the next but one.
A cycle that ends while the previous export is still running is not exported on its own; it is
counted as ``skipped``, and the next export carries its data (cumulative totals, or the deltas the
pipeline keeps until they are delivered). At shutdown the thread makes one final export cut at the
shutdown deadline; an export still running then is abandoned and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Exportable(Protocol):
    last_error: str

    def export(self, deadline: float | None = None) -> bool: ...


class MetricSender:
    """Owns the export thread of one :class:`~otel_kubeskoop.telemetry.pipeline.MetricPipeline`."""

    def __init__(self, pipeline: Exportable, budget: float) -> None:
        self._pipeline = pipeline
        self._budget = budget
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._done = threading.Event()  # the final export ended
        self._final_deadline: float | None = None
        self._busy = False
        self._offered = 0  # cycles handed over
        self._covered = 0  # the cycle the export running or last finished carries
        self._last_ok: bool | None = None  # the last export's result; None before the first
        self.counts: Counter[str] = Counter()  # delivered, failed, skipped, abandoned
        self.last_error = ""
        self.last_delivered: float | None = None  # wall-clock time of the last delivered export
        self._thread = threading.Thread(target=self._run, name="kubeskoop-export-metrics", daemon=True)
        self._thread.start()

    @property
    def failures(self) -> int:
        return self.counts["failed"]

    def offer(self) -> None:
        """A cycle's state is in the pipeline: export it, unless an export is still running."""
        with self._lock:
            self._offered += 1
            if self._busy:
                self.counts["skipped"] += 1
                return
            self._busy, self._covered = True, self._offered
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            final = self._final_deadline
            self._export(final if final is not None else time.monotonic() + self._budget)
            with self._lock:
                self._busy = False
                self._idle.notify_all()
            if final is not None or self._final_deadline is not None:
                if final is None:  # asked to finish while exporting: one more, the final state
                    self._export(self._final_deadline)
                self._done.set()
                return

    def flush(self, timeout: float) -> bool:
        """Wait until the last cycle handed over is exported (exporting it now if its turn was
        skipped); True if that export was delivered."""
        end = time.monotonic() + timeout
        with self._lock:
            if not self._idle.wait_for(lambda: not self._busy, timeout):
                return False
            if self._covered == self._offered:
                return bool(self._last_ok)
            self._busy, self._covered = True, self._offered
        self._wake.set()
        with self._lock:
            return self._idle.wait_for(lambda: not self._busy, max(0.0, end - time.monotonic())) and bool(self._last_ok)

    def _export(self, deadline: float) -> None:
        try:
            ok = self._pipeline.export(deadline)
        except Exception as exc:  # a bug here must not end the thread: count it, go on
            log.error("metric export raised %s: %s", type(exc).__name__, exc)
            ok, self._pipeline.last_error = False, f"{type(exc).__name__}: {exc}"
        self._last_ok = ok
        if ok:
            self.counts["delivered"] += 1
            self.last_delivered = time.time()
        else:
            self.counts["failed"] += 1
            self.last_error = self._pipeline.last_error

    def close(self, deadline: float) -> bool:
        """The final export, cut at ``deadline`` (``time.monotonic()``). True if it was delivered;
        an export still running at the deadline is abandoned (the thread is a daemon)."""
        self._final_deadline = deadline
        self._wake.set()
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            self.counts["abandoned"] += 1
            self.last_error = "the shutdown deadline cut the export"
            log.warning("final metric export not finished by the shutdown deadline: abandoned")
            return False
        return bool(self._last_ok)

    def status(self) -> dict[str, Any]:
        with self._lock:
            busy = self._busy
        state = "exporting" if busy else {None: "idle", True: "ok", False: "failing"}[self._last_ok]
        return {"state": state, "exports": dict(self.counts), "last_error": self.last_error,
                "last_delivered_unix": self.last_delivered}
