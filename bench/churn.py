# SPDX-License-Identifier: Apache-2.0
"""RSS and open fds of the agent over 1000 create/delete cycles of a namespace+pod.

Same loop as ``tests/privileged/test_churn.py`` (which asserts nothing is left behind); this
records the figures every 100 iterations to bench/results/churn.json. The process holds the
agent, the Kubernetes API stand-in (event history capped at 64) and the loop. Run as root.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.agent import Agent  # noqa: E402
from otel_kubeskoop.config import parse  # noqa: E402
from tests.kube_apiserver import KubeAPIServer  # noqa: E402
from tests.privileged.churn import DiscardingExporter, churn, footprint  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "churn.json"


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/churn.py needs root (namespaces and cgroups)")
    rows = []
    with KubeAPIServer(history_limit=64) as api, tempfile.TemporaryDirectory() as tmp:
        os.environ["KUBECONFIG"] = api.write_kubeconfig(Path(tmp) / "kubeconfig")
        config = parse({"address": "", "nodeName": "bench", "metrics": {"probes": [
            {"name": n} for n in ("netdev", "tcp", "udp", "ip", "tcpext", "sock")]}}, "bench", environ={})
        agent = Agent(config, metric_exporter=DiscardingExporter())
        agent.open()
        agent.pods.wait_synced(15)
        agent.cycle()
        churn(agent, api, "bench", 50)  # warm-up
        t0 = time.monotonic()
        for done in range(0, 1001, 100):
            if done:
                churn(agent, api, "bench", 100)
            f = footprint(agent)
            rows.append({"iterations": done, "rss_mib": round(f.rss_kib / 1024, 2), "fds": f.fds,
                         "pipeline_resources": f.resources, "namespaces": f.namespaces, "pods": f.pods})
            print(rows[-1], flush=True)
        agent.stop()
    growth = rows[-1]["rss_mib"] - rows[0]["rss_mib"]
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.monotonic() - t0, 1),
              "rss_growth_mib_over_1000": round(growth, 2), "rows": rows}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"RSS {rows[0]['rss_mib']} -> {rows[-1]['rss_mib']} MiB ({growth:+.2f}); wrote {OUT}")


if __name__ == "__main__":
    main()
