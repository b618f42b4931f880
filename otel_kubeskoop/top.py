# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop top``: a live view of the running agent, one row per pod (or namespace), from
the per-cycle summary the agent sends top clients (live_stream.py).

The agent sends cumulative kernel values each cycle; :class:`Rates` turns two cycles into rates
per second (and the socket read latency histogram's increase into a p99), :func:`render` makes
the table. Keys: ``s`` next sort column, ``q`` quit (Ctrl-C too).
"""

from __future__ import annotations

import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otel_kubeskoop.watch import NoAgent, connect

# rich (5 MiB of RSS) is imported where it draws: the CLI, and so the agent, imports COLUMNS.
if TYPE_CHECKING:
    from rich.table import Table

# Column -> heading; "drops" also shows its top reason. Sortable, in this order.
COLUMNS = {
    "drops": "drops/s (top reason)",
    "retrans": "retrans/s",
    "resets": "resets/s",
    "listen_overflows": "listen ovf/s",
    "conntrack": "conntrack",
    "read_p99": "read p99",
}
LEVELS = ("conntrack",)  # shown as is, not as a rate


@dataclass
class Row:
    name: str
    values: dict[str, float]
    top_reason: str = ""


def _name(row: Mapping[str, Any]) -> str:
    return f"{row['namespace']}/{row['pod']}" if row.get("pod") else str(row.get("name", "?"))


def p99(bounds: Sequence[float], before: Sequence[int], after: Sequence[int]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile of what was added between two
    cumulative histograms (the last bound when it is in the open-ended bucket); None if nothing."""
    added = [a - b for a, b in zip(after, before)]
    total = sum(added)
    if total <= 0:
        return None
    seen = 0
    for i, n in enumerate(added):
        seen += n
        if seen >= 0.99 * total:
            return bounds[min(i, len(bounds) - 1)] if bounds else None
    return None


class Rates:
    """Rates between the last two cycle summaries, per row."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, Any]] = {}
        self._last_time: float | None = None
        self.columns: list[str] = []

    def update(self, summary: Mapping[str, Any], now: float | None = None) -> list[Row]:
        now = time.monotonic() if now is None else now
        dt = now - self._last_time if self._last_time is not None else None
        given = set(summary.get("columns", ()))
        self.columns = [c for c in COLUMNS if c in given or (c == "read_p99" and "read_latency" in given)]
        rows = []
        current = {_name(r): r for r in summary.get("rows", ())}
        for name, row in current.items():
            before = self._last.get(name)
            values: dict[str, float] = {}
            top_reason = ""
            if "conntrack" in row:
                values["conntrack"] = row["conntrack"]
            if before is not None and dt:
                for column in ("retrans", "resets", "listen_overflows"):
                    if column in row and column in before:
                        values[column] = max(0.0, (row[column] - before[column]) / dt)
                if "drops" in row:
                    grew = {k: v - before.get("drops", {}).get(k, 0) for k, v in row["drops"].items()}
                    values["drops"] = max(0.0, sum(grew.values()) / dt)
                    top_reason = max(grew, key=lambda k: grew[k]) if any(grew.values()) else ""
                if "read_latency" in row and "read_latency" in before:
                    got = p99(row["read_latency"]["bounds"], before["read_latency"]["counts"], row["read_latency"]["counts"])
                    if got is not None:
                        values["read_p99"] = got
            rows.append(Row(name, values, top_reason))
        self._last, self._last_time = current, now
        return rows


def _cell(column: str, row: Row) -> str:
    if column not in row.values:
        return "-"
    v = row.values[column]
    if column == "read_p99":
        return f"{v * 1000:.2f} ms"
    if column in LEVELS:
        return f"{int(v)}"
    text = f"{v:.1f}"
    return f"{text} ({row.top_reason})" if column == "drops" and row.top_reason else text


def render(rows: Sequence[Row], columns: Sequence[str], sort: str, limit: int = 50) -> Table:
    """The table, rows sorted by ``sort`` (descending; rows without it last)."""
    ordered = sorted(rows, key=lambda r: (sort not in r.values, -r.values.get(sort, 0.0), r.name))
    from rich.table import Table

    table = Table(title=f"otel-kubeskoop top (sorted by {COLUMNS.get(sort, sort)}; s: sort, q: quit)")
    table.add_column("pod / namespace")
    for column in columns:
        table.add_column(COLUMNS[column] + (" *" if column == sort else ""), justify="right")
    for row in ordered[:limit]:
        table.add_row(row.name, *[_cell(c, row) for c in columns])
    if not columns:
        table.caption = "none of the probes top shows is running (packetloss, tcp, tcpext, conntrack, socketlatency)"
    return table


def next_sort(current: str, columns: Sequence[str]) -> str:
    if not columns:
        return current
    return columns[(columns.index(current) + 1) % len(columns)] if current in columns else columns[0]


class Keys:
    """Single key presses from a terminal (cbreak mode, restored on close); none when stdin is not one."""

    def __init__(self) -> None:
        self._saved: Any = None
        if sys.stdin.isatty():
            self._saved = termios.tcgetattr(sys.stdin)
            tty.setcbreak(sys.stdin)

    def read(self) -> str:
        if self._saved is None or not select.select([sys.stdin], [], [], 0)[0]:
            return ""
        return os.read(sys.stdin.fileno(), 16).decode(errors="replace")

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, self._saved)
            self._saved = None


def run_top(path: str, sort: str) -> None:
    """Follow the agent's cycle summaries and redraw on each, and on each key press."""
    sock = connect(path, {"mode": "top"})
    sock.settimeout(0.2)  # to look at the keyboard between cycles
    rates, rows, keys, buffer = Rates(), [], Keys(), b""
    from rich.live import Live

    try:
        with Live(render([], [], sort), auto_refresh=False, screen=False) as live:
            while True:
                pressed = keys.read()
                if "q" in pressed:
                    return
                if "s" in pressed:
                    sort = next_sort(sort, rates.columns)
                    live.update(render(rows, rates.columns, sort), refresh=True)
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    raise NoAgent("the agent closed the stream")
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "error" in message:
                        raise NoAgent(f"the agent refused: {message['error']}")
                    if "cycle" in message:
                        rows = rates.update(message["cycle"])
                        live.update(render(rows, rates.columns, sort), refresh=True)
    except KeyboardInterrupt:
        return
    finally:
        keys.close()
        sock.close()
