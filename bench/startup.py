# SPDX-License-Identifier: Apache-2.0
"""Time from start to the eBPF probes attached.

- process: from launching ``otel-kubeskoop run`` to ``/status`` showing every configured probe
  running (Python start-up, imports, config, namespace scan, BPF load and attach);
- probes: ``ProbeRuntime.start()`` alone in a warm process (BTF read, load, attach).

Median of RUNS. Results go to bench/results/startup.json, by probe set, with the load average
before and after (the machine is shared). Run as root.

    sudo .venv/bin/python bench/startup.py [probe,probe...]    (default: packetloss,tcpreset,tcpretrans)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.config import parse  # noqa: E402
from otel_kubeskoop.probe import Cycle, Kind  # noqa: E402
from otel_kubeskoop.probes import REGISTRY  # noqa: E402
from otel_kubeskoop.runtime import ProbeRuntime  # noqa: E402
from tests.agentproc import free_port  # noqa: E402

PROBES = ["packetloss", "tcpreset", "tcpretrans"]
RUNS = 5
OUT = Path(__file__).resolve().parent / "results" / "startup.json"


def config_doc(port: int) -> dict:
    """Every probe of PROBES for metrics, and for events where it has them."""
    events = [{"name": p} for p in PROBES if Kind.EVENTS in REGISTRY[p].kinds]
    return {"address": f"127.0.0.1:{port}", "metrics": {"probes": [{"name": p} for p in PROBES]},
            "event": {"probes": events}}


def process_start() -> float:
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(config_doc(port), f)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "otel-kubeskoop"), "run", "-c", f.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1).read())
                states = {p["name"] for p in status["probes"] if p["state"] == "running"}
                if states >= set(PROBES):
                    return time.monotonic() - t0
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 30:
                raise SystemExit("agent did not come up")
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(20)
        os.unlink(f.name)


def probes_start() -> float:
    config = parse(config_doc(0), "bench", environ={})
    rt = ProbeRuntime(config.probes)
    t0 = time.monotonic()
    rt.start(Cycle())
    took = time.monotonic() - t0
    assert all(r.state.value == "running" for r in rt.runs), [(r.name, r.reason) for r in rt.runs]
    rt.stop()
    return took


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    global PROBES
    if os.geteuid() != 0:
        sys.exit("bench/startup.py needs root")
    if len(sys.argv) > 1:
        PROBES = sys.argv[1].split(",")
    load_before = load()
    proc = [process_start() for _ in range(RUNS)]
    probes_start()  # warm: the kernel BTF is read once per process
    warm = [probes_start() for _ in range(RUNS)]
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "probes": PROBES,
              "process_to_attached_s": round(statistics.median(proc), 3),
              "process_runs_s": [round(x, 3) for x in proc],
              "warm_probe_start_s": round(statistics.median(warm), 3),
              "load_before": load_before, "load_after": load()}
    print(json.dumps(result))
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "when" in results:  # one result, as this file was first written
        results = {",".join(results["probes"]): results}
    results[",".join(PROBES)] = result
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
