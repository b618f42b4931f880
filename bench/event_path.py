# SPDX-License-Identifier: Apache-2.0
"""Event path throughput: kernel events -> ring buffer -> decode -> pod resource -> OTLP logs.

A generator process inside a test network namespace makes refused TCP connects to a closed port
on loopback at a paced rate; each one makes the tcpreset probe emit two events (TCPRESET_NOSOCK
for the reset sent, TCPRESET_RECEIVE for the reset received). The agent runs in this process
(probe, event pump, event queue and export thread) with the rate limit off, exporting OTLP/HTTP
to a receiver in another process, for SECONDS at each offered rate. Recorded per rate: events
the kernel saw, delivered, lost by reason (they must add up), delivered per second, and the
agent's CPU seconds per wall second (this process: agent threads only; the generator and the
receiver are other processes).

    python bench/event_path.py [--seconds 60] [--rates 10000,20000,30000]

Results go to bench/results/event_path.json. Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.agent import Agent  # noqa: E402
from otel_kubeskoop.config import parse  # noqa: E402
from otel_kubeskoop.vocabulary import instruments as I  # noqa: E402
from tests.e2e.test_agent_process import free_port  # noqa: E402
from tests.privileged.netnsutil import netns  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "event_path.json"

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


def counters(agent: Agent) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in agent.runtime.collect(agent.snapshot) + agent.events.samples():
        if s.instrument is I.AGENT_EVENTS_DELIVERED:
            out["delivered"] = out.get("delivered", 0) + int(s.value)
        elif s.instrument is I.AGENT_EVENTS_LOST:
            reason = dict(s.attributes)["kubeskoop.loss.reason"]
            out[reason] = out.get(reason, 0) + int(s.value)
    return out


def run(rate: int, seconds: float, http_port: int) -> dict:
    config = parse({
        "address": "", "nodeName": "bench",
        "event": {"probes": [{"name": "tcpreset", "args": {"eventRate": 0}}]},
        "otlp": {"endpoint": f"http://127.0.0.1:{http_port}"},
    }, "bench", environ={})
    with netns() as ns:
        ns.sleeper()
        agent = Agent(config)
        agent.open()
        try:
            agent.cycle()
            before, cpu0, t0 = counters(agent), cpu_seconds(), time.monotonic()
            gen = ns.python(GENERATOR.format(rate=rate, seconds=seconds), timeout=seconds + 120)
            connects = int(gen.stdout.strip())
            time.sleep(0.5)
            agent.events.flush()
            wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
            after = counters(agent)
        finally:
            agent.stop()
    got = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    caused = 2 * connects
    delivered = got.pop("delivered", 0)
    lost = {k: v for k, v in got.items() if v}
    return {
        "offered_events_per_s": 2 * rate, "connects": connects, "events_caused": caused,
        "delivered": delivered, "lost": lost, "accounted": delivered + sum(lost.values()) == caused,
        "delivered_per_s": round(delivered / wall), "agent_cpu_per_s": round(cpu / wall, 3),
        "cpu_us_per_event": round(cpu / max(delivered, 1) * 1e6, 1), "seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rates", default="5000,10000,15000", help="connects per second (2 events each)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/event_path.py needs root")
    http_port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "tests.otlp_receiver", "--grpc-port", "0",
                                 "--http-port", str(http_port), "--quiet"],
                                cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    rows = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            rows.append(run(rate, args.seconds, http_port))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
