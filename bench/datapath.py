# SPDX-License-Identifier: Apache-2.0
"""Datapath cost of BPF probes: iperf3 TCP throughput between two network namespaces over a veth
pair, with the probes loaded vs not, alternating, PAIRS pairs; the median of the per-pair ratios
(with / without) is the figure. iperf3's client and server share one CPU unless --affinity says
otherwise (see its help). The pairs run with bpfStats off (the default config); one more run with
it on records each program's runs per received packet and run time per run: for a probe of the
shared object (bpf/datapath.bpf.c), its handler on each hook as the agent reports it, and each
shared program as the kernel counts it (its handlers' time and its own).

    python bench/datapath.py packetloss,tcpreset,tcpretrans [more probe sets...] [--pairs 7] [--seconds 3] [--floor]

Each argument is one set of probes loaded together (metrics and, where the probe has them,
events). Results go to bench/results/datapath.json (merged by probe set; unpinned runs under
"<set> (unpinned)", runs with --floor under "<set> (with floor)"). Each median ratio comes with its
95% bootstrap interval. Run as root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.bpf import generated  # noqa: E402
from otel_kubeskoop.config import parse  # noqa: E402
from otel_kubeskoop.probe import Cycle, Kind  # noqa: E402
from otel_kubeskoop.probes import REGISTRY  # noqa: E402
from otel_kubeskoop.runtime import ProbeRuntime  # noqa: E402
from otel_kubeskoop.vocabulary import instruments as I  # noqa: E402
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery  # noqa: E402
from tests.privileged.netnsutil import netns, veth_pair  # noqa: E402

from floor import Floor, tc_hooks, traced_hooks  # noqa: E402  (bench/floor.py)

OUT = Path(__file__).resolve().parent / "results" / "datapath.json"


def iperf(client, server_addr: str, seconds: float, affinity: str) -> float:
    """Bits per second received, from iperf3's JSON. affinity: iperf3 -A (client CPU, server
    CPU), or "" to let the scheduler place them."""
    pin = ["-A", affinity] if affinity else []
    out = client.run("iperf3", "-c", server_addr, "-t", str(seconds), "-J", "-O", "1", *pin, check=True).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def runtime_for(probes: list[str], stats: bool) -> ProbeRuntime:
    metrics = [{"name": p} for p in probes if Kind.METRICS in REGISTRY[p].kinds]
    events = [{"name": p} for p in probes if Kind.EVENTS in REGISTRY[p].kinds]
    config = parse({"address": "", "metrics": {"probes": metrics}, "event": {"probes": events},
                    "bpfStats": {"enabled": stats}}, "bench", environ={})
    rt = ProbeRuntime(config.probes, bpf_stats=stats)
    return rt


def started(probes: list[str], discovery: NetnsDiscovery, stats: bool) -> ProbeRuntime:
    rt = runtime_for(probes, stats)
    rt.start(Cycle.of(discovery.scan()))
    states = {r.name: r.state.value for r in rt.runs}
    if any(s != "running" for s in states.values()):
        rt.stop()
        raise SystemExit(f"probes not running: {states} {[r.reason for r in rt.runs]}")
    return rt


def program_stats(rt: ProbeRuntime) -> dict[str, tuple[float, float]]:
    """Program name -> (runs, run time in seconds), cumulative: each probe's programs, or its
    handlers in a shared object's programs, as the agent reports them."""
    samples = rt.self_samples()
    runs = {dict(s.attributes)["kubeskoop.bpf.program"]: s.value for s in samples if s.instrument is I.AGENT_BPF_RUNS}
    time_ = {dict(s.attributes)["kubeskoop.bpf.program"]: s.value for s in samples if s.instrument is I.AGENT_BPF_TIME}
    return {name: (runs[name], time_.get(name, 0.0)) for name in runs}


def shared_program_stats(rt: ProbeRuntime) -> dict[str, tuple[float, float]]:
    """The same for the shared objects' programs as the kernel counts them: every handler they
    ran, plus their own dispatch."""
    out = {}
    for name in generated.OBJECTS:
        shared = rt.objects.get(name)
        if shared is None or shared.obj is None or rt.program_stats is None:
            continue
        for program, fd in shared.obj.program_fds().items():
            got = rt.program_stats.read(fd)
            if got is not None:
                out[program] = (got[0], got[1] / 1e9)
    return out


def per_packet_of(before: dict, after: dict, packets: int) -> tuple[dict[str, float], dict[str, float]]:
    """(ns per run, runs per received packet) of each program run between two readings."""
    per_run, runs_per_packet = {}, {}
    for name, (runs, run_time) in after.items():
        runs -= before.get(name, (0, 0))[0]
        run_time -= before.get(name, (0, 0))[1]
        if runs:
            per_run[name] = round(run_time / runs * 1e9, 1)
            runs_per_packet[name] = round(runs / packets, 2)
    return per_run, runs_per_packet


def rx_packets(ns, dev: str) -> int:
    return int(ns.run("cat", f"/sys/class/net/{dev}/statistics/rx_packets", check=True).stdout)


def median_ratio(ratios: list[float], resamples: int = 2000) -> dict[str, float | list[float]]:
    """The median ratio and its 95% bootstrap interval (percentile method, fixed seed): how well
    the pairs pin the figure down on this machine at this time."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    return {"median_ratio": round(statistics.median(ratios), 4),
            "median_ratio_ci95": [round(medians[int(0.025 * resamples)], 4),
                                  round(medians[int(0.975 * resamples) - 1], 4)]}


def floor_of(probes: list[str], discovery: NetnsDiscovery, interfaces: list) -> Floor:
    """Empty programs on the hooks the set runs on (bench/floor.py), read from the set running."""
    rt = started(probes, discovery, stats=False)
    try:
        return Floor(traced_hooks(rt), tc_hooks(interfaces))
    finally:
        rt.stop()


def floor_row(hooks: Floor, empty: list[float], without: list[float]) -> dict:
    return {"hooks": hooks.describe(), "empty_gbps": [round(x / 1e9, 3) for x in empty],
            **median_ratio([e / wo for e, wo in zip(empty, without)])}


def measure(probes: list[str], pairs: int, seconds: float, affinity: str, floor: bool = False) -> dict:
    """Throughput pairs with bpfStats off (the default, what users pay), then one run with it on
    for each program's runs per received packet and run time per run (the clock reads it costs
    make that run slower, so it is not one of the pairs). With ``floor``, each pair has a third
    run between the two, with empty programs on the set's hooks instead of the set."""
    with netns() as a, netns() as b, veth_pair(a, b, "10.231.7.1/24", "10.231.7.2/24") as (dev_a, dev_b):
        server = b.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        without, with_, empty = [], [], []
        discovery = NetnsDiscovery()
        hooks = None
        try:
            if floor:
                hooks = floor_of(probes, discovery, [(a, dev_a), (b, dev_b)])
            iperf(a, "10.231.7.2", 1, affinity)  # warm-up
            for _ in range(pairs):
                without.append(iperf(a, "10.231.7.2", seconds, affinity))
                if hooks is not None:
                    with hooks.attached():
                        empty.append(iperf(a, "10.231.7.2", seconds, affinity))
                rt = started(probes, discovery, stats=False)
                try:
                    with_.append(iperf(a, "10.231.7.2", seconds, affinity))
                finally:
                    rt.stop()
            rt = started(probes, discovery, stats=True)
            try:
                before, shared_before = program_stats(rt), shared_program_stats(rt)
                packets = rx_packets(b, dev_b)
                iperf(a, "10.231.7.2", seconds, affinity)
                after, shared_after = program_stats(rt), shared_program_stats(rt)
                packets = rx_packets(b, dev_b) - packets
            finally:
                rt.stop()
            per_run, per_packet = per_packet_of(before, after, packets)
            shared_per_run, shared_per_packet = per_packet_of(shared_before, shared_after, packets)
        finally:
            if hooks is not None:
                hooks.close()
            discovery.close()
            server.kill()
            server.wait()
    ratios = [w / wo for w, wo in zip(with_, without)]
    # A shared program's kernel time holds its handlers': count it, not theirs, in the total.
    members = [p for p in probes if importlib.import_module(f"{generated.__name__}.{p}").OBJECT.host]
    handlers = {n for n in per_run if any(n.startswith(f"{m}_") for m in members)}
    return {
        "probes": probes, "pairs": pairs, "seconds": seconds, "affinity": affinity,
        "without_gbps": [round(x / 1e9, 3) for x in without], "with_gbps": [round(x / 1e9, 3) for x in with_],
        **median_ratio(ratios),
        "ns_per_run": per_run, "runs_per_packet": per_packet,
        "shared_ns_per_run": shared_per_run, "shared_runs_per_packet": shared_per_packet,
        "bpf_ns_per_packet": round(
            sum(per_run[n] * per_packet[n] for n in per_run if n not in handlers)
            + sum(shared_per_run[n] * shared_per_packet[n] for n in shared_per_run), 1),
        **({"floor": floor_row(hooks, empty, without)} if hooks is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sets", nargs="+", help="comma-separated probe names loaded together")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--affinity", default="0,0",
                        help='iperf3 -A: client and server CPUs ("" for none). Both on one CPU by '
                             "default: the whole path runs there, so every cycle a probe adds comes out "
                             "of throughput, and runs varied by 2%% (coefficient of variation of the "
                             "runs without probes) instead of 8%% unpinned, where the scheduler moves "
                             "the softirq work about, on 2026-11-25; on 2026-12-02 by 4 to 14%% pinned "
                             "and 8 to 20%% unpinned (bench/results/datapath.json, without_gbps)")
    parser.add_argument("--floor", action="store_true",
                        help="a third run in each pair with an empty program on each of the set's "
                             "hooks instead of the set (bench/floor.py): the kernel's own cost of "
                             "running programs there, which no probe goes below")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/datapath.py needs root")
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for spec in args.sets:
        probes = spec.split(",")
        row = measure(probes, args.pairs, args.seconds, args.affinity, args.floor)
        row["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results[spec + (" (with floor)" if args.floor else "") + ("" if args.affinity else " (unpinned)")] = row
        print(json.dumps(row), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
