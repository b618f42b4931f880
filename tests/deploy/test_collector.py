# SPDX-License-Identifier: Apache-2.0
"""The Collector gateway config of deploy/collector. No Collector binary exists on these machines
(none is packaged for Debian or PyPI), so it cannot be run here: this checks its structure, the
things the agents, dashboards and alerts rely on."""

from __future__ import annotations

import re

import yaml

from tests.deploy.chart import ROOT

CONFIG = yaml.safe_load((ROOT / "deploy/collector/gateway.yaml").read_text())
PIPELINES = CONFIG["service"]["pipelines"]
# Component types of otelcol-contrib that the file may use.
KNOWN = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "k8sattributes", "batch"},
    "exporters": {"prometheusremotewrite", "otlphttp"},
    "extensions": {"health_check", "file_storage"},
}


def kind_of(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_every_component_is_known_defined_and_used():
    for section, known in KNOWN.items():
        defined = set(CONFIG[section])
        assert {kind_of(c) for c in defined} <= known, section
        if section == "extensions":
            used = set(CONFIG["service"]["extensions"])
        else:
            used = {c for p in PIPELINES.values() for c in p[section]}
        assert used == defined, f"{section}: defined {sorted(defined)}, used {sorted(used)}"


def test_pipelines_for_metrics_and_events():
    assert set(PIPELINES) == {"metrics", "logs"}
    for name, pipeline in PIPELINES.items():
        assert pipeline["receivers"] == ["otlp"], name
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter" and processors[-1] == "batch", name
        assert "k8sattributes" in processors, name
    assert {kind_of(e) for e in PIPELINES["metrics"]["exporters"]} == {"prometheusremotewrite", "otlphttp"}
    (logs,) = PIPELINES["logs"]["exporters"]
    assert "loki" in logs and CONFIG["exporters"][logs]["endpoint"] == "${env:LOKI_OTLP_URL}"


def test_receiver_serves_the_agents_default_ports():
    protocols = CONFIG["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")


def test_pods_are_matched_by_the_uid_the_agent_sends():
    association = CONFIG["processors"]["k8sattributes"]["pod_association"]
    assert {"from": "resource_attribute", "name": "k8s.pod.uid"} in [s for a in association for s in a["sources"]]


def test_resource_attributes_become_the_labels_dashboards_use():
    rw = CONFIG["exporters"]["prometheusremotewrite"]
    assert rw["resource_to_telemetry_conversion"]["enabled"] is True
    dashboards = (ROOT / "deploy/dashboards/otlp/network.json").read_text()
    assert "k8s_pod_name" in dashboards and "k8s_node_name" in dashboards


def test_queues_persist_and_endpoints_come_from_the_environment():
    for name, exporter in CONFIG["exporters"].items():
        assert re.fullmatch(r"\$\{env:[A-Z_]+\}", exporter["endpoint"]), name
        if kind_of(name) == "otlphttp":
            assert exporter["sending_queue"]["storage"] == "file_storage/queue", name
    assert CONFIG["extensions"]["file_storage/queue"]["directory"].startswith("/")
