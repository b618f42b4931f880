# SPDX-License-Identifier: Apache-2.0
"""Alert rules: promtool checks them and runs their unit tests on synthetic series; every metric
they use is one the agent's OTLP metrics become in Prometheus; every alert has a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.deploy.chart import ROOT
from tests.deploy.promql import metric_names, otlp_names

RULES = ROOT / "deploy/prometheus"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with Debian's prometheus package (make setup)"
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def alerts() -> list[dict]:
    groups = yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_check():
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", "alerts.yaml")


def test_rules_unit_tests():
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yaml")


def test_every_alert_is_unit_tested():
    tests = yaml.safe_load((RULES / "alerts_test.yaml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in alerts()}


def test_every_metric_is_a_translated_otlp_name():
    known = otlp_names()
    used = set().union(*(metric_names(rule["expr"]) for rule in alerts()))
    assert used and used <= known, sorted(used - known)


def test_every_alert_has_a_runbook_section():
    runbooks = (ROOT / "docs/runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
               for line in runbooks.splitlines() if line.startswith("## ")}
    for rule in alerts():
        target = rule["annotations"]["runbook"]
        assert target.startswith("docs/runbooks.md#")
        assert target.split("#", 1)[1] in anchors, target
