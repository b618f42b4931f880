# SPDX-License-Identifier: Apache-2.0
"""Memory under a backend outage, and per namespace (issue 11, findings 6 and 7).

``outage``: the agent as a process (the console script) at NAMESPACES test namespaces, each with a
sleeping process, the default probes plus tcpreset events (rate limit off) from refused loopback
connects made at RATE a second; its OTLP/HTTP backend is a black hole (accepts, never answers) for
OUTAGE seconds, then a real receiver on the same port for RECOVERY seconds. RSS is sampled every 5 s
from /proc/<pid>/status; /status gives events delivered and lost by reason.

``per-namespace``: the same agent, no backend, RSS after 5 cycles at each namespace count; the
slope is the per-namespace cost.

    python bench/outage_rss.py outage [--namespaces 100] [--outage 600] [--recovery 60] [--rate 2000]
    python bench/outage_rss.py per-namespace [--counts 0,100,400]

Results go to bench/results/outage_rss.json and bench/results/namespace_rss.json. Run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.blackhole import BlackHole  # noqa: E402
from tests.agentproc import CLI, free_port, get  # noqa: E402
from tests.otlp_receiver import OTLPReceiver  # noqa: E402
from tests.privileged.netnsutil import netns  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_agent(tmp: Path, port: int, env: dict[str, str], events: bool, interval: float) -> subprocess.Popen[bytes]:
    config = yaml.safe_load((ROOT / "config/default.yaml").read_text())
    config["address"] = f"127.0.0.1:{port}"
    config["otlp"]["interval"] = interval
    if events:
        config["event"] = {"probes": [{"name": "tcpreset", "args": {"eventRate": 0}}]}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.Popen([CLI, "run", "-c", str(tmp / "config.yaml")], env={**clean, "NO_PROXY": "127.0.0.1", **env},
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr", "wb"))  # noqa: SIM115


def wait_cycles(port: int, n: int, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            status = json.loads(get(port, "/status")[1])
            if status.get("cycles", 0) >= n:
                return status
        time.sleep(0.5)
    raise RuntimeError(f"no {n} cycles in {timeout} s")


def refused_connects(rate: int, stop: threading.Event) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    n, start = 0, time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while n < due:
            with socket.socket() as c, contextlib.suppress(ConnectionRefusedError):
                c.connect(("127.0.0.1", closed))
            n += 1
        time.sleep(0.001)


def outage(args: argparse.Namespace, tmp: Path) -> dict:
    backend = free_port()
    port = free_port()
    samples: list[tuple[float, float, str]] = []
    with contextlib.ExitStack() as stack:
        for _ in range(args.namespaces):
            stack.enter_context(netns()).sleeper()
        hole = stack.enter_context(BlackHole(backend))
        agent = start_agent(tmp, port, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{backend}"}, True, 15)
        try:
            wait_cycles(port, 1)
            stop = threading.Event()
            gen = threading.Thread(target=refused_connects, args=(args.rate, stop), daemon=True)
            gen.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.outage:
                samples.append((round(time.monotonic() - t0, 1), round(rss_mib(agent.pid), 1), "outage"))
                time.sleep(5)
            during = json.loads(get(port, "/status")[1])
            hole.close()
            with OTLPReceiver(http_port=backend):
                t1 = time.monotonic()
                while time.monotonic() - t1 < args.recovery:
                    samples.append((round(time.monotonic() - t0, 1), round(rss_mib(agent.pid), 1), "recovered"))
                    time.sleep(5)
                stop.set()
                gen.join()
                after = json.loads(get(port, "/status")[1])
        finally:
            agent.terminate()
            agent.wait(30)
    outage_rss = [r for _, r, phase in samples if phase == "outage"]
    return {
        "namespaces": args.namespaces, "outage_seconds": args.outage, "recovery_seconds": args.recovery,
        "offered_connects_per_second": args.rate,
        "rss_mib_max_during_outage": max(outage_rss), "rss_mib_at_outage_start": outage_rss[0],
        "rss_mib_end_of_recovery": samples[-1][1],
        "events_during_outage": during["events"], "events_after_recovery": after["events"],
        "otlp_after_recovery": after["otlp"], "samples": samples,
    }


def per_namespace(args: argparse.Namespace, tmp: Path) -> dict:
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        with contextlib.ExitStack() as stack:
            for _ in range(count):
                stack.enter_context(netns()).sleeper()
            port = free_port()
            agent = start_agent(tmp, port, {}, False, 2)
            try:
                status = wait_cycles(port, 5)
                rows.append({"namespaces": len(status["namespaces"]), "rss_mib": round(rss_mib(agent.pid), 1)})
            finally:
                agent.terminate()
                agent.wait(30)
        print(rows[-1], flush=True)
    slope = ((rows[-1]["rss_mib"] - rows[0]["rss_mib"]) * 1024 / (rows[-1]["namespaces"] - rows[0]["namespaces"])
             if len(rows) > 1 else None)
    return {"rows": rows, "kib_per_namespace": round(slope, 1) if slope is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("outage", "per-namespace"))
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--outage", type=float, default=600)
    parser.add_argument("--recovery", type=float, default=60)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--counts", default="0,100,400")
    args = parser.parse_args()
    tmp = Path(f"/tmp/okp-bench-{os.getpid()}")
    tmp.mkdir()
    result = outage(args, tmp) if args.mode == "outage" else per_namespace(args, tmp)
    result["measured"] = time.strftime("%Y-%m-%d")
    out = RESULTS / ("outage_rss.json" if args.mode == "outage" else "namespace_rss.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
