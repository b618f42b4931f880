# SPDX-License-Identifier: Apache-2.0
"""Event path throughput: kernel events -> ring buffer -> decode -> pod resource -> OTLP logs.

A generator in a test network namespace makes the kernel send TCP resets at a paced rate
(``bench/refused_connects.c``, built with ``cc`` at start): by default (``--mode syn``) SYN
segments from a raw socket, 64 per ``sendmmsg``, to a closed port on loopback, each answered by
a RST that reaches no socket (one TCPRESET_NOSOCK event); ``--mode connect``, refused connects
(two events each, nosock and receive: the method of the rows before 2026-12-02 10:30, which
used Python generators). The generator is C and batched so that on this machine of 2 cores the
CPU goes to the agent: a Python loop of refused connects cost about 0.65 core at 52,000 events/s,
the C one 0.5 core, SYN segments 0.3 core (all of it the kernel's own work). The agent runs in
this process (probe, event pump, event queue and export thread) with the rate limit off,
exporting OTLP/HTTP to ``bench/log_counter.py`` in another process, which parses every request
and counts its log records: ``delivered`` is what the receiver counted, for SECONDS at each
offered rate. With ``--stalled``, each rate is run in alternating pairs without and with one
live-stream client (``telemetry/stream.py``) that asks for every event and never reads.

Accounting: what the kernel saw is its own count, the probe's ``counters`` map (every reset the
programs see, in any namespace, plus ``counters_full``), read before and after the run, each time
after the event path has drained and the count stood still. Recorded per row: events the kernel
saw, how many of them the generator caused in the test namespace (the rest are other resets on
the host in the meantime), log records the receiver got, the agent's own delivered count, lost by
reason from the agent's counters; ``accounted`` is kernel-seen == received + lost, exactly, and
received == the agent's delivered. Also recorded: received per second, this process's CPU
seconds per wall second (agent threads only: generator and receiver are other processes, their
CPU is recorded too), CPU per delivered event, ring buffer size, the load average before the
row and the ``uptime`` line after it.

Where the time goes (py-spy over the agent at 100,000 events/s offered, and a scratch loop of
the same decode and emit over synthetic tcpreset records on one thread): the pump thread is the
one that saturates; of its time about 45% is writing the log records (``telemetry/logwire.py``),
35% decoding (``struct`` unpack, attribute tuples, the ``Event``), the rest the ring read and the
queue; the export thread (joining and sending batches of 2,048) takes about a sixth as much.
The scratch loop went from 6.5 to 5.4 us per event with ports' varints written inline, one
join per record, one tuple of attributes per event and ``Event`` slots filled directly
(``probes/_decode.py`` ``new_event``).

    sudo .venv/bin/python bench/event_path.py --seconds 60 --rates 60000 [--mode syn|connect]
        [--ring-kib N] [--stalled] [--append] [--out FILE]

``--rates`` are events per second offered. Results go to bench/results/event_path.json
(``--append``: added to the rows there); each row names the commit of the tree it ran
(``code``), so runs of two trees alternate into one file. Run as root.
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
import urllib.request
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

SOURCE = ROOT / "bench" / "refused_connects.c"
PORT = 9  # closed in the test namespace


def build(out_dir: str) -> str:
    """The generator, compiled into ``out_dir``."""
    binary = f"{out_dir}/refused_connects"
    subprocess.run(["cc", "-O2", "-Wall", "-o", binary, str(SOURCE)], check=True)
    return binary


class Receiver:
    """``bench/log_counter.py`` in a process of its own, on ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "log_counter.py"), str(port)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout is None or self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("bench/log_counter.py did not start")

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=10) as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


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


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def received(receiver: Receiver) -> tuple[int, float]:
    """tcpreset log records the receiver counted so far, and its CPU seconds."""
    state = receiver.state()
    return (sum(n for name, n in state["records"].items() if name.startswith("kubeskoop.tcpreset.")),
            state["cpu_seconds"])


def run(args: argparse.Namespace, rate: int, receiver: Receiver, generator: str,
        stalled: bool) -> dict[str, Any]:
    sock_dir = tempfile.mkdtemp(prefix="okp-bench-")
    probe_args: dict[str, Any] = {"eventRate": 0}
    if args.ring_kib is not None:
        probe_args["ringBufferKiB"] = args.ring_kib
    config = parse({
        "address": "", "nodeName": "bench",
        "event": {"probes": [{"name": "tcpreset", "args": probe_args}]},
        "otlp": {"endpoint": f"http://127.0.0.1:{receiver.port}"},
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
            ring_bytes = probe.bpf.obj.map("events").max_entries
            if stalled:
                client = stalled_client(config.raw.event_stream.path)
                deadline = time.monotonic() + 5
                while stream_counts(agent).get("clients") != 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the stalled client was not accepted")
                    time.sleep(0.05)
            seen0, netns0, out0 = settled(agent, probe)
            rx0, rx_cpu0 = received(receiver)
            stream0 = stream_counts(agent)
            cpu0, t0 = cpu_seconds(), time.monotonic()
            gen = ns.popen(generator, args.mode, str(rate), str(args.seconds), str(PORT), stdout=subprocess.PIPE)
            out, _ = gen.communicate(timeout=args.seconds + 120)
            if gen.returncode:
                raise RuntimeError(f"generator failed ({gen.returncode})")
            caused, gen_cpu = out.split()
            wall = time.monotonic() - t0
            seen1, netns1, out1 = settled(agent, probe)
            cpu = cpu_seconds() - cpu0
            rx1, rx_cpu1 = received(receiver)
            stream1 = stream_counts(agent)
        finally:
            if client is not None:
                client.close()
            agent.stop()
    got = out1 - out0
    agent_delivered = got.pop("delivered", 0)
    delivered = rx1 - rx0
    lost = {k: v for k, v in sorted(got.items()) if v}
    seen = seen1 - seen0
    row = {
        "code": code(), "mode": args.mode, "offered_events_per_s": rate, "stalled_client": stalled,
        "ring_buffer_bytes": ring_bytes, "events_caused": int(caused),
        "kernel_seen": seen, "kernel_seen_test_netns": netns1[ns.inode] - netns0[ns.inode],
        "delivered": delivered, "agent_delivered": agent_delivered, "lost": lost,
        "accounted": delivered + sum(lost.values()) == seen and delivered == agent_delivered,
        "delivered_per_s": round(delivered / wall), "agent_cpu_per_s": round(cpu / wall, 3),
        "cpu_us_per_event": round(cpu / max(delivered, 1) * 1e6, 1),
        "generator_cpu_per_s": round(float(gen_cpu) / wall, 3),
        "receiver_cpu_per_s": round((rx_cpu1 - rx_cpu0) / wall, 3), "seconds": round(wall, 1),
        "load_before": loadavg, "uptime_after": uptime(),
    }
    if stalled:
        row["stalled_client_dropped"] = stream1.get("dropped", 0) - stream0.get("dropped", 0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", default="60000", help="events per second offered, comma-separated")
    parser.add_argument("--mode", choices=("syn", "connect"), default="syn",
                        help="SYN segments (one event each) or refused connects (two)")
    parser.add_argument("--ring-kib", type=int, help="the probe's ringBufferKiB (default: the probe's)")
    parser.add_argument("--stalled", action="store_true",
                        help="each rate twice, without then with a stalled live-stream client")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/event_path.py needs root")
    build_dir = tempfile.mkdtemp(prefix="okp-bench-gen-")
    generator = build(build_dir)
    receiver = Receiver(free_port())
    rows = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            for stalled in (False, True) if args.stalled else (False,):
                rows.append(run(args, rate, receiver, generator, stalled))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        receiver.close()
    if args.append and args.out.exists():
        rows = json.loads(args.out.read_text())["rows"] + rows
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
