# SPDX-License-Identifier: Apache-2.0
"""Event path throughput: kernel events -> ring buffer -> decode -> pod resource -> OTLP logs.

Generator processes inside a test network namespace make refused TCP connects to a closed port on
loopback at a paced rate (``--generators`` of them share it: one Python process tops out near the
rates measured here); each connect makes the tcpreset probe emit two events (TCPRESET_NOSOCK for
the reset sent, TCPRESET_RECEIVE for the reset received). The agent runs in this process (probe,
event pump, event queue and export thread) with the rate limit off, exporting OTLP/HTTP to a
receiver in another process, for SECONDS at each offered rate; with ``--stalled``, each rate is
run in alternating pairs without and with one live-stream client (``telemetry/stream.py``)
that connects to the agent's unix socket, asks for every event and never reads.

Accounting: what the kernel saw is its own count, the probe's ``counters`` map (every reset the
programs see, in any namespace, plus ``counters_full``), read before and after the run, each time
after the event path has drained and the count stood still. Recorded per row: events the kernel
saw, how many of them the generator caused in the test namespace (the rest are other resets on
the host in the meantime), delivered, lost by reason; ``accounted`` is kernel-seen == delivered +
lost, exactly. The rows before this method compared with twice the connects and were off by the
few resets of other processes (``accounted: false`` with nothing lost). Also recorded: delivered
per second, this process's CPU seconds per wall second (agent threads only; the generators and
the receiver are other processes), CPU per delivered event, the load average before the row.

Where the time went (a scratch profile of the same path over synthetic tcpreset records, one
thread, then per-thread CPU in the agent; us per event on this 2-core machine): before, 1.2 in
libbpf's callback and the copy, 12.5 decoding (a ctypes object per record, then
``connection_attributes``: socket.inet_ntop and new tuples), 15 building an opentelemetry-proto
``LogRecord`` per event (nine ``KeyValue`` messages extended into it), 5 merging the records into
the request and serializing it: about 33, the 40 measured here with requests of a few dozen
records (about 1 ms of CPU each in the HTTP client) and full garbage collections during backlogs.
After: 0.5 reading the ring's memory, 3.5 decoding (one ``struct`` unpack, attribute pairs built
once per distinct value), 4 to 5 writing the record in wire form from cached attribute encodings,
1.5 joining and sending full batches: 13 to 14 in all at 50,000 events/s (README "Event path").

    python bench/event_path.py [--seconds 60] [--rates 25000] [--generators 2] [--stalled] [--append]

Results go to bench/results/event_path.json (``--append``: added to the rows there); each row
names the commit of the tree it ran (``code``), so runs of two trees alternate into one file.
Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.agent import Agent  # noqa: E402
from otel_kubeskoop.config import parse  # noqa: E402
from otel_kubeskoop.vocabulary import instruments as I  # noqa: E402
from tests.agentproc import free_port  # noqa: E402
from tests.privileged.netnsutil import netns  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "event_path.json"
SETTLE_TRIES = 100

GENERATOR = """
import socket, time, sys
rate, seconds, port = {rate}, {seconds}, 9
n = 0
start = time.monotonic()
end = start + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate)
    while n < due:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            pass
        s.close()
        n += 1
    time.sleep(0.0005)
print(n)
"""


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def kernel_counts(probe: Any) -> tuple[int, Counter[int]]:
    """Resets the probe's programs counted: in all, and by namespace inode."""
    by_netns: Counter[int] = Counter()
    for key, value in probe.bpf.map("counters").items():
        by_netns[key.netns] += value
    full = probe.bpf.map("counters_full").lookup(0) or 0
    return sum(by_netns.values()) + full, by_netns


def outcomes(agent: Agent, probe: Any) -> Counter[str]:
    """Delivered and lost by reason so far: the emitter's, the kernel's, the decoder's."""
    out: Counter[str] = Counter(delivered=sum(agent.events.delivered.values()))
    for (_, reason), n in agent.events.lost.items():
        out[reason] += n
    out.update(probe.bpf.losses())
    out["decode_error"] += probe.bpf.ctx.decode_errors
    return out


def settled(agent: Agent, probe: Any) -> tuple[int, Counter[int], Counter[str]]:
    """Kernel counts and outcomes once the path has drained and nothing new arrived: the same
    twice, 0.2 s apart, the event queue flushed in between."""
    last = None
    for _ in range(SETTLE_TRIES):
        seen, by_netns = kernel_counts(probe)
        time.sleep(0.2)  # the pump reads within its wakeup; a program run ends in microseconds
        agent.events.flush()
        now = (seen, kernel_counts(probe)[0], outcomes(agent, probe))
        if now[0] == now[1] and last is not None and last == now:
            return seen, by_netns, now[2]
        last = now
    raise RuntimeError(f"event path did not settle in {SETTLE_TRIES} tries: {last}")


def stream_counts(agent: Agent) -> dict[str, int]:
    out = {}
    for s in agent.stream.samples() if agent.stream is not None else ():
        if s.instrument is I.AGENT_STREAM_CLIENTS:
            out["clients"] = int(s.value)
        elif s.instrument is I.AGENT_STREAM_DROPPED:
            out["dropped"] = int(s.value)
    return out


def stalled_client(path: str) -> socket.socket:
    """A live-stream client that asks for every event and never reads."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    conn.sendall(b'{"mode": "events"}\n')
    return conn


def code() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":!bench/results"], capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def run(rate: int, seconds: float, http_port: int, generators: int, stalled: bool) -> dict[str, Any]:
    sock_dir = tempfile.mkdtemp(prefix="okp-bench-")
    config = parse({
        "address": "", "nodeName": "bench",
        "event": {"probes": [{"name": "tcpreset", "args": {"eventRate": 0}}]},
        "otlp": {"endpoint": f"http://127.0.0.1:{http_port}"},
        "eventStream": {"path": f"{sock_dir}/events.sock"},
    }, "bench", environ={})
    loadavg = load()
    client = None
    with netns() as ns:
        ns.sleeper()
        agent = Agent(config)
        agent.open()
        try:
            agent.cycle()
            probe = next(run.probe for run in agent.runtime.runs if run.name == "tcpreset")
            if stalled:
                client = stalled_client(config.raw.event_stream.path)
                deadline = time.monotonic() + 5
                while stream_counts(agent).get("clients") != 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the stalled client was not accepted")
                    time.sleep(0.05)
            seen0, netns0, out0 = settled(agent, probe)
            stream0 = stream_counts(agent)
            cpu0, t0 = cpu_seconds(), time.monotonic()
            gens = [ns.popen(sys.executable, "-c", GENERATOR.format(rate=rate / generators, seconds=seconds),
                             stdout=subprocess.PIPE) for _ in range(generators)]
            connects = sum(int(g.communicate(timeout=seconds + 120)[0].strip()) for g in gens)
            wall = time.monotonic() - t0
            seen1, netns1, out1 = settled(agent, probe)
            cpu = cpu_seconds() - cpu0
            stream1 = stream_counts(agent)
        finally:
            if client is not None:
                client.close()
            agent.stop()
    got = out1 - out0
    delivered = got.pop("delivered", 0)
    lost = {k: v for k, v in sorted(got.items()) if v}
    seen = seen1 - seen0
    row = {
        "code": code(), "offered_events_per_s": 2 * rate, "generators": generators, "stalled_client": stalled,
        "connects": connects, "events_caused": 2 * connects,
        "kernel_seen": seen, "kernel_seen_test_netns": netns1[ns.inode] - netns0[ns.inode],
        "delivered": delivered, "lost": lost, "accounted": delivered + sum(lost.values()) == seen,
        "delivered_per_s": round(delivered / wall), "agent_cpu_per_s": round(cpu / wall, 3),
        "cpu_us_per_event": round(cpu / max(delivered, 1) * 1e6, 1), "seconds": round(wall, 1),
        "load_before": loadavg,
    }
    if stalled:
        row["stalled_client_dropped"] = stream1.get("dropped", 0) - stream0.get("dropped", 0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", default="25000", help="connects per second (2 events each)")
    parser.add_argument("--generators", type=int, default=2, help="generator processes sharing a rate")
    parser.add_argument("--stalled", action="store_true",
                        help="each rate twice, without then with a stalled live-stream client")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/event_path.py needs root")
    http_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "tests.otlp_receiver", "--grpc-port", "0",
                                 "--http-port", str(http_port), "--quiet"],
                                cwd=ROOT, stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    rows = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            for stalled in (False, True) if args.stalled else (False,):
                rows.append(run(rate, args.seconds, http_port, args.generators, stalled))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)
    if args.append and args.out.exists():
        rows = json.loads(args.out.read_text())["rows"] + rows
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
