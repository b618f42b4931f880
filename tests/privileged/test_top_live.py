# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop top`` in a pseudo-terminal against a running agent process, on traffic the test
makes at known rates.

Pod shop/web-1 (namespace A) tracks connections (an iptables conntrack rule), sends about 100 UDP
datagrams a second to a port an iptables DROP rule guards (NETFILTER_DROP), keeps 7 UDP flows
alive, and reads its TCP connection 180 ms after each write (a receive wait in socketlatency's
(134, 268] ms bucket). The plain namespace B makes about 20 refused connects a second (resets
and NO_SOCKET drops) and keeps connecting to a listener whose accept queue is full (listen
overflows, and the SYN retransmits of those connects). ``top`` must show a row for each with
those rates, refresh once per collection, change the order when ``s`` moves the sort to
retransmits, and quit on ``q`` with exit 0 and the terminal as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_kubeskoop.probes._latency import BOUNDS
from otel_kubeskoop.top import COLUMNS
from tests.agentproc import CLI, get
from tests.privileged.liveagent import POD_NAME, POD_NAMESPACE, live_agent
from tests.privileged.netnsutil import TestNetns, require_root
from tests.privileged.probes.conftest import iptables, require_iptables

require_root()
pytestmark = pytest.mark.privileged

READ_WAIT = 0.18
# top shows the upper bound of the histogram bucket holding the 99th percentile: (134, 268] ms here.
READ_P99 = f"{next(b for b in BOUNDS if READ_WAIT <= b) * 1000:.2f} ms"
PROBES = ["tcp", "tcpext", "packetloss", "conntrack", "socketlatency"]

POD_TRAFFIC = f"""
import socket, time
drop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 7200))
flows = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(7)]
srv = socket.create_server(("127.0.0.1", 7300))
c = socket.create_connection(("127.0.0.1", 7300))
s, _ = srv.accept()
print("ready", flush=True)
while True:
    for _ in range(25):
        drop.sendto(b"x", ("127.0.0.1", 5000))
    for f in flows:
        f.sendto(b"x", ("127.0.0.1", 7200))
    c.send(b"x" * 100)
    time.sleep({READ_WAIT})
    s.recv(1000)
    time.sleep(0.25 - {READ_WAIT})
"""

PLAIN_TRAFFIC = """
import socket, time
lst = socket.socket()
lst.bind(("127.0.0.1", 7400))
lst.listen(0)  # never accepted: one connection fills the queue, every later SYN overflows it
pending = []
print("ready", flush=True)
while True:
    for _ in range(5):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", 7011))
        except ConnectionRefusedError:
            pass
        s.close()
        time.sleep(0.05)
    if len(pending) < 100:
        p = socket.socket()
        p.setblocking(False)
        p.connect_ex(("127.0.0.1", 7400))
        pending.append(p)
"""


def start(ns: TestNetns, code: str) -> None:
    proc = ns.popen(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"


def conntrack_entries(ns: TestNetns) -> int:
    """The namespace's conntrack table size, as /proc/net/stat/nf_conntrack gives it."""
    return int(ns.run("cat", "/proc/net/stat/nf_conntrack").stdout.splitlines()[1].split()[0], 16)


# Rich's Live redraw: back to the first line of the last frame, each line erased on the way.
REDRAW = re.compile(rb"\r(?:\x1b\[2K\x1b\[1A)*\x1b\[2K")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HEADINGS = {heading: column for column, heading in COLUMNS.items()}


@dataclass
class Frame:
    at: float
    title: str
    sort: str | None  # the column marked with "*"
    rows: dict[str, dict[str, str]]  # row name -> column -> cell
    order: list[str]


def parse_frame(at: float, raw: bytes) -> Frame:
    lines = ANSI.sub("", raw.decode(errors="replace")).splitlines()
    top = next((i for i, line in enumerate(lines) if line.startswith("┏")), len(lines))
    title = " ".join(" ".join(lines[:top]).split())
    header = next((line for line in lines if line.startswith("┃")), "┃┃")
    columns = [cell.strip() for cell in header.strip("┃").split("┃")][1:]
    sort = next((HEADINGS[c[:-2]] for c in columns if c.endswith(" *")), None)
    keys = [HEADINGS[c.removesuffix(" *")] for c in columns]
    rows, order = {}, []
    for line in lines:
        if line.startswith("│"):
            name, *cells = (cell.strip() for cell in line.strip("│").split("│"))
            rows[name] = dict(zip(keys, cells))
            order.append(name)
    return Frame(at, title, sort, rows, order)


class Terminal:
    """A command on a pseudo-terminal of 200 x 100, its output kept with arrival times."""

    def __init__(self, argv: list[str]) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 100, 200, 0, 0))
        self.modes = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True, env={**os.environ, "TERM": "xterm-256color"})
        self.output = bytearray()
        self.times: list[tuple[int, float]] = []  # (offset, arrival)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.1)[0]:
                chunk = os.read(self.master, 1 << 16)
                with self._lock:
                    self.times.append((len(self.output), time.monotonic()))
                    self.output += chunk

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def frames(self) -> list[Frame]:
        with self._lock:
            data, times = bytes(self.output), list(self.times)
        starts = [0] + [m.end() for m in REDRAW.finditer(data)]
        ends = [m.start() for m in REDRAW.finditer(data)] + [len(data)]
        out = []
        for begin, end in zip(starts, ends):
            at = max((t for offset, t in times if offset <= begin), default=0.0)
            out.append(parse_frame(at, data[begin:end]))
        return out

    def wait_frame(self, predicate, timeout: float, after: float = 0.0) -> Frame:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for frame in self.frames():
                if frame.at >= after and predicate(frame):
                    return frame
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        last = self.frames()[-1:] if self.output else []
        raise AssertionError(f"no such frame within {timeout}s (exit {self.proc.poll()}); last: {last}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


def cycles(port: int) -> int:
    return json.loads(get(port, "/status")[1])["cycles"]


def number(cell: str) -> float:
    return float(cell.split()[0])


def test_top_in_a_terminal(tmp_path: Path) -> None:
    require_iptables()
    with live_agent(tmp_path, PROBES, []) as live:
        a, b = live.pod, live.plain
        pod = f"{POD_NAMESPACE}/{POD_NAME}"
        iptables(a, "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP")
        iptables(a, "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
        start(a, POD_TRAFFIC)
        start(b, PLAIN_TRAFFIC)
        term = Terminal([CLI, "top", "--socket", live.socket, "--sort", "drops"])
        try:
            # Two cycles after the first give every rate; B's SYNs are retransmitted after 1 s.
            term.wait_frame(lambda f: all(f.rows.get(n, {}).get(c, "-") != "-" and number(f.rows[n][c]) > 0
                                          for n, c in ((pod, "drops"), (b.name, "retrans"), (pod, "read_p99"))),
                            timeout=30)
            entries = conntrack_entries(a)
            t1, c1 = time.monotonic(), cycles(live.agent.port)
            time.sleep(5)
            t2, c2 = time.monotonic(), cycles(live.agent.port)
            assert conntrack_entries(a) == entries, "the pod's conntrack table held still"
            window = [f for f in term.frames() if t1 < f.at <= t2 and pod in f.rows]
            # One redraw per collection (no key was pressed): the agent's cycles in the window.
            assert abs(len(window) - (c2 - c1)) <= 1, (len(window), c1, c2)
            assert len(window) >= 3
            print(f"{len(window)} frames in {t2 - t1:.1f} s, {c2 - c1} cycles; last: {pod} {window[-1].rows[pod]}, "
                  f"{b.name} {window[-1].rows[b.name]}, order {window[-1].order}")

            def median(name: str, column: str) -> float:
                return statistics.median(number(f.rows[name][column]) for f in window)

            for f in window:
                assert f.sort == "drops" and "sorted by drops/s" in f.title
                assert f.order.index(pod) < f.order.index(b.name)  # ~100 drops/s before ~20
                assert f.rows[pod]["drops"].endswith("(NETFILTER_DROP)"), f.rows[pod]
                assert f.rows[b.name]["drops"].endswith("(NO_SOCKET)"), f.rows[b.name]
                assert number(f.rows[pod]["conntrack"]) == entries
                assert f.rows[pod]["read_p99"] == READ_P99, f.rows[pod]
                for column in ("retrans", "resets", "listen_overflows"):
                    assert f.rows[pod][column] == "0.0", (column, f.rows[pod])
                assert f.rows[b.name]["read_p99"] == "-"
            assert 40 <= median(pod, "drops") <= 130, [f.rows[pod] for f in window]
            assert 8 <= median(b.name, "drops") and 8 <= median(b.name, "resets") <= 30, [f.rows[b.name] for f in window]
            assert median(b.name, "listen_overflows") > 0 and median(b.name, "retrans") > 0
            assert entries >= 9  # 7 flows, the dropped datagrams' flow, the TCP connection

            term.press("s")  # drops -> retransmits
            pressed = time.monotonic()
            resorted = term.wait_frame(lambda f: f.sort == "retrans" and pod in f.rows, timeout=5, after=pressed)
            assert "sorted by retrans/s" in resorted.title
            assert resorted.order.index(b.name) < resorted.order.index(pod)
            after = term.wait_frame(lambda f: f.sort == "retrans" and f.at > resorted.at and pod in f.rows,
                                    timeout=5, after=pressed)
            assert after.order.index(b.name) < after.order.index(pod)  # and on the next collection

            term.press("q")
            assert term.proc.wait(5) == 0
            time.sleep(0.2)
            assert termios.tcgetattr(term.slave) == term.modes, "terminal modes restored (cbreak off)"
            output = bytes(term.output)
            assert b"\x1b[?1049h" not in output, "no alternate screen"
            assert output.count(b"\x1b[?25l") == 1 and output.endswith(b"\x1b[?25h"), "cursor shown again"
        finally:
            term.close()
