# SPDX-License-Identifier: Apache-2.0
"""The Grafana dashboards of deploy/dashboards/.

- They are what deploy/dashboards/generate.py writes from the instrument table.
- Every probe has panels in the OTLP set, and every probe with compat series in the compat set;
  every metric name of the OTLP set is one the OTLP-to-Prometheus translation yields.

The compat set against a real Prometheus: test_dashboards_prometheus.py.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from otel_kubeskoop.probes import ALL_PROBES, INSTRUMENTS
from otel_kubeskoop.vocabulary import instruments as I
from tests.deploy.chart import ROOT
from tests.deploy.promql import metric_names, otlp_names

DASHBOARDS = ROOT / "deploy/dashboards"
_spec = importlib.util.spec_from_file_location("generate", DASHBOARDS / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def exprs(path: str) -> list[str]:
    board = json.loads((DASHBOARDS / path).read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def variables(path: str) -> dict[str, str]:
    board = json.loads((DASHBOARDS / path).read_text())
    return {v["name"]: v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"}


def sets(prefix: str) -> list[str]:
    return [p for p in generate.DASHBOARDS if p.startswith(prefix)]


def used(prefix: str) -> set[str]:
    return set().union(*(metric_names(e) for p in sets(prefix) for e in exprs(p)))


@pytest.mark.parametrize("path", list(generate.DASHBOARDS))
def test_committed_dashboards_are_generated(path):
    assert (DASHBOARDS / path).read_text() == generate.render(path), "run `make dashboards`"


def test_otlp_names_are_the_translations():
    names = used("otlp/") | {n for p in sets("otlp/") for q in variables(p).values() for n in metric_names(q)}
    assert names and names <= otlp_names(), sorted(names - otlp_names())


def test_every_probe_has_panels():
    otlp, compat = used("otlp/"), used("compat/")
    for probe in ALL_PROBES:
        translated = {generate.O(s.name) for s in probe.instruments} | {generate.O(s.name, "bucket") for s in probe.instruments}
        assert translated & otlp, f"no OTLP panel for {probe.name}"
        compat_names = {s.compat for s in probe.instruments if s.compat}
        assert not compat_names or compat_names & compat, f"no compat panel for {probe.name}"
    agent = {generate.O(s.name) for s in I.AGENT}
    assert agent <= otlp, f"agent health not on a panel: {sorted(agent - otlp)}"


def test_compat_names_are_the_endpoints():
    served = {s.compat for s in INSTRUMENTS if s.compat} | {"kubeskoop_agent_compat_unattributed_namespaces"}
    assert used("compat/") <= served, sorted(used("compat/") - served)
