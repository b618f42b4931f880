# SPDX-License-Identifier: Apache-2.0
"""Datapath cost of BPF probes: iperf3 TCP throughput between two network namespaces over a veth
pair, with the probes loaded vs not, alternating, PAIRS pairs; the median of the per-pair ratios
(with / without) is the figure. With bpfStats on, each program's run time per run is recorded too.

    python bench/datapath.py packetloss,tcpreset,tcpretrans [more probe sets...] [--pairs 5] [--seconds 5]

Each argument is one set of probes loaded together (metrics and, where the probe has them,
events). Results go to bench/results/datapath.json (merged by probe set). Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.config import parse  # noqa: E402
from otel_kubeskoop.probe import Kind  # noqa: E402
from otel_kubeskoop.probes import REGISTRY  # noqa: E402
from otel_kubeskoop.runtime import ProbeRuntime  # noqa: E402
from otel_kubeskoop.telemetry import instruments as I  # noqa: E402
from otel_kubeskoop.topology.netns import NetnsDiscovery  # noqa: E402
from tests.privileged.netnsutil import netns, veth_pair  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "datapath.json"


def iperf(client, server_addr: str, seconds: float) -> float:
    """Bits per second received, from iperf3's JSON."""
    out = client.run("iperf3", "-c", server_addr, "-t", str(seconds), "-J", "-O", "1", check=True).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def runtime_for(probes: list[str]) -> ProbeRuntime:
    metrics = [{"name": p} for p in probes if Kind.METRICS in REGISTRY[p].kinds]
    events = [{"name": p} for p in probes if Kind.EVENTS in REGISTRY[p].kinds]
    config = parse({"address": "", "metrics": {"probes": metrics}, "event": {"probes": events},
                    "bpfStats": {"enabled": True}}, "bench", environ={})
    rt = ProbeRuntime(config.probes, bpf_stats=True)
    return rt


def measure(probes: list[str], pairs: int, seconds: float) -> dict:
    with netns() as a, netns() as b, veth_pair(a, b, "10.231.7.1/24", "10.231.7.2/24"):
        server = b.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        without, with_, per_run = [], [], {}
        discovery = NetnsDiscovery()
        try:
            iperf(a, "10.231.7.2", 1)  # warm-up
            for _ in range(pairs):
                without.append(iperf(a, "10.231.7.2", seconds))
                rt = runtime_for(probes)
                rt.cycle.namespaces = discovery.scan()
                rt.start()
                try:
                    states = {r.name: r.state.value for r in rt.runs}
                    if any(s != "running" for s in states.values()):
                        raise SystemExit(f"probes not running: {states} {[r.reason for r in rt.runs]}")
                    before = {s.attributes: s.value for s in rt.self_samples() if s.instrument is I.AGENT_BPF_RUNS}
                    tbefore = {s.attributes: s.value for s in rt.self_samples() if s.instrument is I.AGENT_BPF_TIME}
                    with_.append(iperf(a, "10.231.7.2", seconds))
                    samples = rt.self_samples()
                    for s in samples:
                        if s.instrument is I.AGENT_BPF_RUNS:
                            runs = s.value - before.get(s.attributes, 0)
                            t = next(x.value for x in samples if x.instrument is I.AGENT_BPF_TIME and x.attributes == s.attributes)
                            name = dict(s.attributes)["kubeskoop.bpf.program"]
                            if runs:
                                per_run.setdefault(name, []).append((t - tbefore.get(s.attributes, 0)) / runs * 1e9)
                finally:
                    rt.stop()
        finally:
            discovery.close()
            server.kill()
            server.wait()
    ratios = [w / wo for w, wo in zip(with_, without)]
    return {
        "probes": probes, "pairs": pairs, "seconds": seconds,
        "without_gbps": [round(x / 1e9, 3) for x in without], "with_gbps": [round(x / 1e9, 3) for x in with_],
        "median_ratio": round(statistics.median(ratios), 4),
        "ns_per_run": {k: round(statistics.median(v), 1) for k, v in per_run.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sets", nargs="+", help="comma-separated probe names loaded together")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/datapath.py needs root")
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for spec in args.sets:
        probes = spec.split(",")
        row = measure(probes, args.pairs, args.seconds)
        row["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results[spec] = row
        print(json.dumps(row), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
