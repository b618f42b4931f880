# SPDX-License-Identifier: Apache-2.0
"""Config reloads: the time from a ConfigMap-style swap (tests/configmap.py) to the new eBPF
probe (packetloss) running, through the directory watch and its debounce; and the CPU time of a
reload that changes nothing (read, validate, compare; SIGHUP or POST /-/reload with the same file).

The agent runs in this process with the procfs probe ``udp`` and no OTLP endpoint. Median of RUNS.
Results go to bench/results/reload.json. Run as root.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.agent import Agent  # noqa: E402
from otel_kubeskoop.config import load  # noqa: E402
from tests.configmap import ConfigMapVolume  # noqa: E402
from tests.helpers import MemoryExporter  # noqa: E402

RUNS = 15
DEBOUNCE = 0.5  # the default reload.debounce
OUT = Path(__file__).resolve().parent / "results" / "reload.json"


def document(tmp: Path, probes: list[str]) -> dict:
    return {"address": "", "eventStream": {"path": str(tmp / "events.sock")},
            "reload": {"debounce": DEBOUNCE}, "metrics": {"probes": [{"name": p} for p in probes]}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        volume = ConfigMapVolume(tmp / "cm")
        volume.write(document(tmp, ["udp"]))
        agent = Agent(load(volume.path), metric_exporter=MemoryExporter())
        agent.start()
        try:
            to_attached = []
            for _ in range(RUNS):
                for probes in (["udp", "packetloss"], ["udp"]):
                    t0 = time.monotonic()
                    volume.write(document(tmp, probes))
                    while sorted(r.name for r in agent.runtime.runs if r.state.value == "running") != sorted(probes):
                        time.sleep(0.002)
                    if "packetloss" in probes:
                        to_attached.append(time.monotonic() - t0)
            no_change = []
            for _ in range(RUNS * 10):
                c0 = time.process_time()
                assert agent.reloader.reload("bench") == "unchanged"
                no_change.append(time.process_time() - c0)
        finally:
            agent.stop()
    result = {
        "swap_to_attached_s": {"median": round(statistics.median(to_attached), 4), "max": round(max(to_attached), 4),
                               "debounce_s": DEBOUNCE, "runs": RUNS},
        "no_change_reload_cpu_ms": {"median": round(statistics.median(no_change) * 1000, 3),
                                    "max": round(max(no_change) * 1000, 3), "runs": RUNS * 10},
        "measured": time.strftime("%Y-%m-%d"),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
