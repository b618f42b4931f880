# SPDX-License-Identifier: Apache-2.0
"""Config reloads: what triggers them, what they did, and what is shown of them.

Three triggers: a change in the config file's directory (``filewatch.py``; a ConfigMap's
``..data`` swap, an editor's rename, a plain write), ``SIGHUP``, and ``POST /-/reload`` when
``reload.http`` is on. Each only asks; one thread of ours reads the file, validates it, and applies
the difference (``reconfigure.py``) under the agent's cycle lock, so a reload never runs in the
middle of a collection.

A config that does not validate changes nothing: the old one stays in force, the error (as
``config validate`` prints it) is logged once per distinct error, and ``/status`` shows it with the
generation in force and the time and result of the last reload. Results, counted in
``kubeskoop.agent.config.reloads{result}``: ``applied``; ``partial`` (a probe failed to start, or
a setting needs a restart; the rest applied); ``unchanged``; ``failed`` (the config is invalid).
A watch event after which the file says what it said before is not a reload (a ConfigMap update
of another key, an editor's backup file) and is not counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from otel_kubeskoop import config as configuration
from otel_kubeskoop import reconfigure
from otel_kubeskoop.filewatch import DirectoryWatch
from otel_kubeskoop.probe import Sample
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I

if TYPE_CHECKING:
    from otel_kubeskoop.agent import Agent

log = logging.getLogger(__name__)

RESULTS = ("applied", "partial", "unchanged", "failed")


class Reloader:
    """Reloads ``agent``'s config from the file it was loaded from (``Config.source``)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.path = agent.config.source if os.path.isfile(agent.config.source) else None
        self.generation = 1
        self.counts: Counter[str] = Counter()
        self.last: dict[str, Any] = {}
        self._text = self._read_text()  # what the config in force was loaded from
        self._failed_text: str | None = None  # the last text that did not validate
        self._errors_logged: set[str] = set()
        self._pending: str | None = None  # the trigger of a reload asked for and not yet made
        self._cond = threading.Condition()
        self._attempts = 0  # reloads made by the thread
        self._running = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._watch: DirectoryWatch | None = None

    def _read_text(self) -> str | None:
        try:
            return configuration.read(self.path) if self.path else None
        except configuration.ConfigError:
            return None

    def start(self) -> None:
        if self.path is None:
            return  # built-in defaults: nothing to reload from
        self._thread = threading.Thread(target=self._run, name="kubeskoop-reload", daemon=True)
        self._thread.start()
        if self._agent.config.raw.reload.watch:
            self._watch = DirectoryWatch(os.path.dirname(os.path.abspath(self.path)),
                                         lambda: self.request("watch"), self._agent.config.raw.reload.debounce)
            self._watch.start()

    def stop(self) -> None:
        """Stop the watch and the reload thread (a reload under way finishes first). Idempotent."""
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def request(self, trigger: str) -> None:
        """Ask for a reload (from any thread; from a signal handler too: it only takes a lock the
        main thread never holds)."""
        with self._cond:
            if self._pending is None or self._pending == "watch":
                self._pending = trigger
            self._cond.notify_all()

    def reload_and_wait(self, trigger: str, timeout: float = 30.0) -> dict[str, Any]:
        """Ask for a reload and return its outcome (``POST /-/reload``)."""
        with self._cond:
            target = self._attempts + 1 + self._running  # one that already read the file is not it
        self.request(trigger)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._attempts < target and not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    return {"result": "timeout"}
                self._cond.wait(left)
            return dict(self.last)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                trigger, self._pending = self._pending, None
                self._running = True
            try:
                self.reload(trigger)
            except Exception as exc:  # a bug in applying must not end reloads
                log.exception("config reload: %s", exc)
                self._record(trigger, "failed", error=f"{type(exc).__name__}: {exc}")
            with self._cond:
                self._attempts += 1
                self._running = False
                self._cond.notify_all()

    def reload(self, trigger: str) -> str | None:
        """Read, validate and apply the config file now; the result, or None when a watch event
        left the file as it was."""
        if self.path is None:
            return None
        try:
            text = configuration.read(self.path)
        except configuration.ConfigError as exc:
            return self._failed(trigger, exc, None)
        if trigger == "watch" and text in (self._text, self._failed_text):
            return None
        try:
            new = configuration.loads(text, self.path)
        except configuration.ConfigError as exc:
            return self._failed(trigger, exc, text)
        t0 = time.perf_counter()
        with self._agent.lock:
            done = reconfigure.apply(self._agent, new)
        self._text = text
        if done.changed():
            self.generation += 1
        result = "partial" if done.probes.failed or done.not_applied else "applied" if done.changed() else "unchanged"
        self._record(trigger, result, changes=done.as_dict(), seconds=round(time.perf_counter() - t0, 6))
        log.info("config reload (%s): %s, generation %d%s", trigger, result, self.generation,
                 f": {done.as_dict()}" if done.as_dict() else "")
        with self._agent.lock:
            self._agent.board.publish(self._agent)
        return result

    def _failed(self, trigger: str, exc: configuration.ConfigError, text: str | None) -> str:
        self._failed_text = text
        message = str(exc)
        if message not in self._errors_logged:
            self._errors_logged.add(message)
            log.error("config reload (%s) failed; generation %d stays in force:\n%s", trigger, self.generation, message)
        self._record(trigger, "failed", error=message)
        return "failed"

    def _record(self, trigger: str, result: str, **detail: Any) -> None:
        self.counts[result] += 1
        self.last = {"result": result, "trigger": trigger, "time": time.time(), "generation": self.generation, **detail}

    def status(self) -> dict[str, Any]:
        return {"source": self.path or self._agent.config.source, "generation": self.generation,
                "watch": self._watch is not None, "http": self._agent.config.raw.reload.http,
                "reloads": dict(self.counts), "last_reload": self.last or None}

    def samples(self) -> list[Sample]:
        return [Sample(I.AGENT_CONFIG_RELOADS, self.counts[r], None, ((A.RELOAD_RESULT, r),)) for r in RESULTS]
