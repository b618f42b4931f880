# SPDX-License-Identifier: Apache-2.0
"""Memory under a backend outage, and per namespace (issue 11, findings 6 and 7).

``outage``: the agent as a process (the console script) at NAMESPACES test namespaces, each with a
sleeping process, the default probes plus tcpreset events (rate limit off) from refused loopback
connects made at RATE a second; its OTLP/HTTP backend is a black hole (accepts, never answers) for
OUTAGE seconds, then a real receiver on the same port for RECOVERY seconds, then the connects stop
and RSS is read once more after SETTLE seconds. RSS is sampled every 5 s from /proc/<pid>/status;
/status gives events delivered and lost by reason.

``per-namespace``: one agent on the default config (a 2 s interval) exporting to a real receiver,
while namespaces are added (each a sleeping process in a namespace of its own, loopback up) up to
each count, then all deleted; RSS after 5 cycles at each step. The slope is the per-namespace cost.

RSS is given in MiB (2^20 bytes) and in MB (10^6 bytes, the unit of the issue's target).

    python bench/outage_rss.py outage [--namespaces 100] [--outage 600] [--recovery 60] [--rate 2000]
    python bench/outage_rss.py per-namespace [--counts 1,500,1000,2000]

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
from collections.abc import Callable
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


def mb(mib: float) -> float:
    return round(mib * 2**20 / 1e6, 1)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()


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
                after = json.loads(get(port, "/status")[1])
                stop.set()
                gen.join()
                time.sleep(args.settle)
                settled = round(rss_mib(agent.pid), 1)
        finally:
            agent.terminate()
            agent.wait(30)
    outage_rss = [r for _, r, phase in samples if phase == "outage"]
    return {
        "namespaces": args.namespaces, "outage_seconds": args.outage, "recovery_seconds": args.recovery,
        "settle_seconds": args.settle, "offered_connects_per_second": args.rate,
        "rss_mib_max_during_outage": max(outage_rss), "rss_mb_max_during_outage": mb(max(outage_rss)),
        "rss_mib_at_outage_start": outage_rss[0],
        "rss_mib_end_of_recovery": samples[-1][1], "rss_mib_after_events_stop": settled,
        "rss_mb_after_events_stop": mb(settled),
        "events_during_outage": during["events"], "events_after_recovery": after["events"],
        "otlp_after_recovery": after["otlp"], "samples": samples,
    }


def namespace_process() -> subprocess.Popen[bytes]:
    """A sleeping process in a network namespace of its own, with its loopback up."""
    return subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 3600"],
                            stdin=subprocess.DEVNULL)


def settle(port: int, cycles: int, seen: Callable[[int], bool], timeout: float = 300) -> dict:
    """/status once ``cycles`` more cycles have run with a number of namespaces ``seen`` accepts."""
    end = time.monotonic() + timeout
    first = None
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            status = json.loads(get(port, "/status")[1])
            if seen(len(status["namespaces"])):
                first = status["cycles"] if first is None else first
                if status["cycles"] >= first + cycles:
                    return status
        time.sleep(0.5)
    raise RuntimeError(f"not the namespaces expected for {cycles} cycles in {timeout} s")


def per_namespace(args: argparse.Namespace, tmp: Path) -> dict:
    rows = []
    procs: list[subprocess.Popen[bytes]] = []
    backend, port = free_port(), free_port()
    with OTLPReceiver(http_port=backend):
        agent = start_agent(tmp, port, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{backend}"}, False, 2)
        try:
            base = len(wait_cycles(port, 1)["namespaces"])  # the host's and what else runs here
            for count in [int(c) for c in args.counts.split(",")]:
                while len(procs) < count - 1:
                    procs.append(namespace_process())
                status = settle(port, 5, lambda n: n >= base + len(procs))
                rows.append({"namespaces": len(status["namespaces"]), "rss_mib": round(rss_mib(agent.pid), 1)})
                print(rows[-1], flush=True)
            for p in procs:
                p.kill()
                p.wait()
            procs = []
            status = settle(port, 5, lambda n: n <= base)
            deleted = {"namespaces": len(status["namespaces"]), "rss_mib": round(rss_mib(agent.pid), 1)}
            print(deleted, flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            agent.terminate()
            agent.wait(30)
    first, last = rows[0], rows[-1]
    slope = (last["rss_mib"] - first["rss_mib"]) * 1024 / (last["namespaces"] - first["namespaces"])
    return {"rows": rows, "after_deleting_them": deleted, "kib_per_namespace": round(slope, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("outage", "per-namespace"))
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--outage", type=float, default=600)
    parser.add_argument("--recovery", type=float, default=60)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--settle", type=float, default=30)
    parser.add_argument("--counts", default="1,500,1000,2000")
    args = parser.parse_args()
    tmp = Path(f"/tmp/okp-bench-{os.getpid()}")
    tmp.mkdir()
    before = load()
    result = outage(args, tmp) if args.mode == "outage" else per_namespace(args, tmp)
    result["measured"] = time.strftime("%Y-%m-%d")
    result["uptime_before_and_after"] = [before, load()]
    out = RESULTS / ("outage_rss.json" if args.mode == "outage" else "namespace_rss.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
