# SPDX-License-Identifier: Apache-2.0
"""CPU cost of one collection cycle vs a plain read of the same files, and the agent's RSS.

For 1, 10, 50 and 100 network namespaces (each with one sleeping process, made here and removed
at the end), in one run:

- raw:    open+read of every file the default procfs probes read (per namespace: net/dev, snmp,
          netstat, sockstat, sockstat6; once: softnet_stat), no parsing;
- probes: namespace scan + every default probe's collect (read + parse + samples);
- cycle:  probes + the OTLP pipeline (data points updated in the per-resource messages, the
          request built and serialized as the OTLP/HTTP exporter would send it).

CPU is thread CPU time (time.thread_time) of the median of REPEAT runs. RSS is measured on the
agent as a real process (``otel-kubeskoop run``) exporting OTLP/HTTP to a local receiver after
several cycles at 100 namespaces. Results go to bench/results/cycle_cost.json and are printed
as the README table. Run as root: ``make bench``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.agent import Agent  # noqa: E402
from otel_kubeskoop.config import parse  # noqa: E402
from tests.helpers import cycle  # noqa: E402
from tests.otlp_receiver import OTLPReceiver  # noqa: E402

COUNTS = (1, 10, 50, 100)
REPEAT = 15
PER_NS = ("net/dev", "net/snmp", "net/netstat", "net/sockstat", "net/sockstat6")
DEFAULT = ["netdev", "tcp", "udp", "ip", "tcpext", "sock", "softnet"]
PREFIX = "kskbench-"
OUT = Path(__file__).resolve().parent / "results" / "cycle_cost.json"


class Namespaces:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def grow(self, n: int) -> None:
        while len(self.names) < n:
            name = f"{PREFIX}{os.getpid()}-{len(self.names)}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", name, "sleep", "infinity"]))
            self.names.append(name)
        time.sleep(0.3)  # let the sleepers enter their namespaces

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], check=False)


def cpu(fn, repeat: int = REPEAT, clock=time.thread_time) -> float:
    """Median CPU seconds of ``fn``: this thread's, or with ``clock=time.process_time`` every
    thread's (the cycle's export runs on the export thread)."""
    samples = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples)


def raw_read(agent: Agent) -> None:
    for ns in agent.snapshot.namespaces.values():
        for rel in PER_NS:
            try:
                ns.read(rel)
            except FileNotFoundError:
                pass
    agent.snapshot.host.read("net/softnet_stat")


class SerializingExporter:
    """Does what the OTLP/HTTP exporter does with a request before the network: serialize it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.points = self.size = self.requests = 0

    def export_request(self, request, timeout=None) -> bool:
        self.requests += 1
        self.size += len(request.SerializeToString())
        self.points += sum(len(getattr(m, m.WhichOneof("data")).data_points)
                          for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
        return True

    def shutdown(self) -> None:
        pass


def measure_cpu(count: int) -> dict:
    config = parse({"address": "", "metrics": {"probes": [{"name": n} for n in DEFAULT]}}, "bench", environ={})
    exporter = SerializingExporter()
    agent = Agent(config, metric_exporter=exporter)
    agent.open()
    try:
        cycle(agent)
        namespaces = len(agent.snapshot.namespaces)

        def probes_only():
            agent.runtime.collect(agent.scan())

        row = {
            "namespaces_made": count,
            "namespaces_seen": namespaces,
            "raw_read_ms": cpu(lambda: raw_read(agent)) * 1e3,
            "probes_ms": cpu(probes_only) * 1e3,
            "cycle_ms": cpu(lambda: cycle(agent), clock=time.process_time) * 1e3,
        }
        exporter.reset()
        cycle(agent)
        row.update(points_per_cycle=exporter.points, requests_per_cycle=exporter.requests,
                   bytes_per_cycle=exporter.size)
        row["probes_vs_raw"] = row["probes_ms"] / row["raw_read_ms"]
        row["cycle_vs_raw"] = row["cycle_ms"] / row["raw_read_ms"]
        return row
    finally:
        agent.stop()


def measure_rss(tmp: Path) -> dict:
    """RSS of the agent process with OTLP/HTTP export at 1 s interval, after 10 cycles."""
    cfg = tmp / "bench-config.yaml"
    cfg.write_text(json.dumps({"address": "", "metrics": {"probes": [{"name": n} for n in DEFAULT]},
                               "otlp": {"interval": 1}}))
    with OTLPReceiver() as rx:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint, "NO_PROXY": "127.0.0.1"})
        proc = subprocess.Popen([str(Path(sys.executable).parent / "otel-kubeskoop"), "run", "-c", str(cfg)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rx.wait_metric_requests(10, timeout=60)
            with open(f"/proc/{proc.pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f)
            rss_kib = int(fields["VmRSS"].split()[0])
            hwm_kib = int(fields["VmHWM"].split()[0])
            with open(f"/proc/{proc.pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            ticks = os.sysconf("SC_CLK_TCK")
            cpu_s = (int(stat[11]) + int(stat[12])) / ticks
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return {"rss_mib": rss_kib / 1024, "peak_rss_mib": hwm_kib / 1024, "process_cpu_s_after_10_cycles": cpu_s}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/cycle_cost.py needs root (it creates network namespaces)")
    spaces = Namespaces()
    rows = []
    try:
        for count in COUNTS:
            spaces.grow(count)
            rows.append(measure_cpu(count))
            r = rows[-1]
            print(f"{count:>4} ns: raw {r['raw_read_ms']:.2f} ms, probes {r['probes_ms']:.2f} ms "
                  f"({r['probes_vs_raw']:.1f}x), cycle {r['cycle_ms']:.2f} ms ({r['cycle_vs_raw']:.1f}x), "
                  f"{r['points_per_cycle']} points in {r['requests_per_cycle']} request(s), {r['bytes_per_cycle']} B", flush=True)
        rss = measure_rss(Path("/tmp"))
        print(f"agent process at {COUNTS[-1]} ns: RSS {rss['rss_mib']:.1f} MiB (peak {rss['peak_rss_mib']:.1f})")
    finally:
        spaces.close()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "repeat": REPEAT, "rows": rows, "rss_at_100": rss,
    }, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
