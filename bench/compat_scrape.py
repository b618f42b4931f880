# SPDX-License-Identifier: Apache-2.0
"""CPU cost of the KubeSkoop-compatible /metrics endpoint: per collection and per scrape.

Samples for every instrument that has an upstream name (netdev with two interfaces, rdma and
tuple metrics left out) in each of N pod namespaces, through ``CompatEndpoint.update`` (series
summed, stamped with the collection's time, rendered to text once) and ``render`` (what a scrape
costs). ``prometheus_client_ms`` is what ``prometheus_client.generate_latest`` takes to render the
same families, as the endpoint did before. CPU is thread CPU time, the median of several runs (``cycle_cost.cpu``).

    python bench/compat_scrape.py

Results go to bench/results/compat_scrape.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cycle_cost import cpu  # noqa: E402
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from otel_kubeskoop.probe import Sample  # noqa: E402
from otel_kubeskoop.identity.labels import CompatLabels  # noqa: E402
from otel_kubeskoop.telemetry.compat import CompatEndpoint  # noqa: E402
from otel_kubeskoop.vocabulary import attributes as A  # noqa: E402
from otel_kubeskoop.probes import INSTRUMENTS  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "compat_scrape.json"
COUNTS = (1, 10, 100)


def samples(inode: int) -> list[Sample]:
    """Distinct values (the worst case for the text: no two format alike)."""
    out = []
    for i, spec in enumerate(INSTRUMENTS):
        if spec.compat is None or spec.compat_labels:
            continue
        value = inode * 100_003 + i
        if A.NETWORK_INTERFACE_NAME in spec.attributes:
            out += [Sample(spec, value, inode, ((A.NETWORK_INTERFACE_NAME, dev),)) for dev in ("eth0", "lo")]
        else:
            out.append(Sample(spec, value, inode))
    return out


class Families:
    """The endpoint's families as a prometheus_client collector (what generate_latest renders)."""

    def __init__(self, text: bytes) -> None:
        self.families = []
        for parsed in text_string_to_metric_families(text.decode()):
            fam = GaugeMetricFamily(parsed.name, parsed.documentation,
                                    labels=sorted(parsed.samples[0].labels) if parsed.samples else [])
            for s in parsed.samples:
                fam.add_metric([s.labels[k] for k in sorted(s.labels)], s.value, s.timestamp)
            self.families.append(fam)

    def collect(self):
        return self.families


def main() -> None:
    rows = []
    for n in COUNTS:
        groups = {1000 + i: samples(1000 + i) for i in range(n)}
        labels = {k: CompatLabels("ns", f"pod-{k}") for k in groups}
        directory = SimpleNamespace(compat_labels=labels.get, peer=None)  # no tuple metrics here
        endpoint = CompatEndpoint("node-a", [], directory, max_tuple_series=10000)
        endpoint.update(groups)
        text = endpoint.render()[2]
        families = Families(text)
        rows.append({
            "namespaces": n,
            "series": text.count(b"\n") - text.count(b"# "),
            "bytes": len(text),
            "update_ms": round(cpu(lambda: endpoint.update(groups)) * 1e3, 2),
            "scrape_ms": round(cpu(endpoint.render) * 1e3, 4),
            "prometheus_client_ms": round(cpu(lambda: generate_latest(families)) * 1e3, 2),
        })
        print(rows[-1])
    OUT.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
