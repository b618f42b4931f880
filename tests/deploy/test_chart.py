# SPDX-License-Identifier: Apache-2.0
"""The Helm chart: it lints, renders with several value sets, every object validates against the
Kubernetes schemas, its security posture is the one docs/deploy.md describes, and the config it
renders is one the agent accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from otel_kubeskoop import capabilities
from otel_kubeskoop.probe import Scope
from otel_kubeskoop.probes import ALL_PROBES
from tests.deploy.chart import CHART, ROOT, agent_container, chart_config, config_text, helm, one, render

CLI = str(Path(sys.executable).parent / "otel-kubeskoop")
# CRDs of the Prometheus Operator: not in the Kubernetes schemas, checked field by field below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
EVERYTHING_ON = ("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "dashboards.enabled=true")
VALUE_SETS = {
    "defaults": (),
    "everything on": EVERYTHING_ON,
    "no io probe": ("config.metrics.probes[0].name=netdev",),
    "existing service account and priority class": (
        "serviceAccount.create=false", "serviceAccount.name=agents", "rbac.create=false",
        "priorityClass.name=system-node-critical", "image.tag=dev", "hostPID=false"),
    "otlp set only, custom port": ("dashboards.enabled=true", "dashboards.sets={otlp}", "config.address=:9200"),
}


def validate(objects: list[dict], kube_version: str) -> None:
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_chart_lints():
    out = helm("lint", str(CHART), "--strict", *[a for s in EVERYTHING_ON for a in ("--set", s)])
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
@pytest.mark.parametrize("kube_version", ["1.33.0", "1.29.0"])
def test_every_rendered_object_validates(name, kube_version):
    objects = render(*VALUE_SETS[name], kube_version=kube_version)
    validate(objects, kube_version)
    kinds = {o["kind"] for o in objects}
    assert {"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service",
            "PriorityClass"} - kinds <= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
    assert one(objects, "DaemonSet")["metadata"]["namespace"] == "observability"


def test_security_posture():
    objects = render()
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    container = agent_container(objects)
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    chart_caps = frozenset(f"CAP_{c}" for c in sc["capabilities"]["add"])
    assert chart_caps == {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
    # enough for every probe the agent has, so any of them can be turned on in the ConfigMap
    assert capabilities.missing(ALL_PROBES, chart_caps) == {}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["appArmorProfile"] == {"type": "Unconfined"}
    assert pod["hostNetwork"] is False and pod["hostIPC"] is False
    assert pod["hostPID"] is True  # the default config lists io
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == one(objects, "PriorityClass")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert pod["automountServiceAccountToken"] is True
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is True
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} and "memory" in container["resources"]["limits"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host_paths = {v["name"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"host-proc", "host-sys", "netns"}
    assert all(mounts[name]["readOnly"] for name in host_paths)


def test_rbac_reads_pods_owners_and_services_and_writes_nothing():
    objects = render()
    rules = one(objects, "ClusterRole")["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("", "pods", "list"), ("", "pods", "watch"), ("apps", "replicasets", "get"),
                       ("batch", "jobs", "get"), ("", "services", "list")}
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": one(objects, "ServiceAccount")["metadata"]["name"],
                                    "namespace": "observability"}]


def test_mounts_are_where_the_config_looks(tmp_path):
    objects = render()
    config = chart_config(objects)
    mounts = {m["name"]: m["mountPath"] for m in agent_container(objects)["volumeMounts"]}
    assert (mounts["host-proc"], mounts["host-sys"], mounts["netns"]) == (
        config["procRoot"], config["sysRoot"], config["netnsDir"])
    assert config["cgroupRoot"].startswith(config["sysRoot"] + "/")
    command = agent_container(objects)["command"]
    assert command[-1] == mounts["config"] + "/config.yaml"
    (port,) = agent_container(objects)["ports"]
    assert str(port["containerPort"]) == config["address"].rsplit(":", 1)[1]


@pytest.mark.parametrize("name", ["defaults", "no io probe", "otlp set only, custom port"])
def test_rendered_config_passes_config_validate(tmp_path, name):
    path = tmp_path / "config.yaml"
    path.write_text(config_text(render(*VALUE_SETS[name])))
    proc = subprocess.run([CLI, "config", "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


@pytest.mark.parametrize("spec", ALL_PROBES, ids=lambda s: s.name)
def test_host_pid_only_for_pod_scope_probes(tmp_path, spec):
    values = {"config": {"metrics": {"probes": [{"name": spec.name}]}}}
    pod = one(render(values=values, tmp=tmp_path), "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is (spec.scope is Scope.POD)


def test_apparmor_before_kubernetes_1_30_is_an_annotation():
    objects = render(kube_version="1.29.0")
    template = one(objects, "DaemonSet")["spec"]["template"]
    assert template["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/agent"] == "unconfined"
    assert "appArmorProfile" not in agent_container(objects)["securityContext"]


def test_config_changes_apply_live_and_rolling_is_an_option():
    """The agent reloads the mounted ConfigMap itself: by default no checksum rolls the pods."""
    annotations = one(render(), "DaemonSet")["spec"]["template"]["metadata"].get("annotations", {})
    assert "checksum/config" not in annotations
    roll = "rolloutOnConfigChange=true"
    a = one(render(roll), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(render(roll, "config.otlp.interval=30"), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert a != b


def test_service_monitor_adds_the_node_label():
    monitor = one(render(*EVERYTHING_ON), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in endpoint["relabelings"]
    service = one(render(), "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_prometheus_rule_carries_the_alerts_file(tmp_path):
    rule = one(render(*EVERYTHING_ON), "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    assert rule["spec"] == alerts
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboards_are_configmaps_for_grafanas_sidecar():
    maps = [o for o in render(*EVERYTHING_ON) if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    files = sorted(p.relative_to(ROOT / "deploy/dashboards") for p in (ROOT / "deploy/dashboards").glob("*/*.json"))
    assert len(maps) == len(files) > 0
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = cm["data"].items()
        set_name, file_name = key.split("-", 1)
        assert json.loads(text) == json.loads((ROOT / "deploy/dashboards" / set_name / file_name).read_text())
    only_otlp = [o for o in render("dashboards.enabled=true", "dashboards.sets={otlp}") if "grafana_dashboard" in o["metadata"]["labels"]]
    assert only_otlp and all(next(iter(o["data"])).startswith("otlp-") for o in only_otlp)


def test_schema_rejects_bad_values():
    for bad in ("capabilities[0]=SYS_SUPERPOWER", "hostPID=sometimes", "config.procRoot=relative/proc",
                "dashboards.sets={grafana}", "serviceMonitor.interval=soon"):
        proc = helm("template", "okp", str(CHART), "--set", bad, check=False)
        assert proc.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in proc.stderr or "schema" in proc.stderr, proc.stderr


def test_prestop_hook_cleans_up_within_a_grace_period_that_holds_the_shutdown_budget():
    from otel_kubeskoop.config import DEFAULT_SHUTDOWN_TIMEOUT_S

    objects = render()
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    hook = agent_container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:3] == ["otel-kubeskoop", "cleanup", "--prestop"]
    # the flags the CLI has, and the config the agent runs with
    assert subprocess.run([CLI, *hook[1:3], "--help"], capture_output=True, text=True, check=True).returncode == 0
    assert hook[3:] == agent_container(objects)["command"][2:]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"].get("shutdownTimeout", DEFAULT_SHUTDOWN_TIMEOUT_S) == 20 == DEFAULT_SHUTDOWN_TIMEOUT_S
    assert pod["terminationGracePeriodSeconds"] >= DEFAULT_SHUTDOWN_TIMEOUT_S + values["preStopSeconds"]
    assert "lifecycle" not in agent_container(render("preStopCleanup=false"))


@pytest.mark.parametrize("sets", [("terminationGracePeriodSeconds=24",),
                                  ("config.shutdownTimeout=28",),
                                  ("config.shutdownTimeout=10", "terminationGracePeriodSeconds=14")])
def test_a_grace_period_shorter_than_the_hook_and_the_shutdown_budget_is_refused(sets):
    args = ["template", "okp", str(CHART)] + [a for s in sets for a in ("--set", s)]
    proc = helm(*args, check=False)
    assert proc.returncode != 0 and "terminationGracePeriodSeconds" in proc.stderr and "SIGKILL" in proc.stderr
    assert helm(*args, "--set", "preStopCleanup=false").returncode == 0  # without the hook they fit
    proc = helm("template", "okp", str(CHART), "--set", "preStopCleanup=false", "--set", "terminationGracePeriodSeconds=19",
                check=False)
    assert proc.returncode != 0 and "SIGKILL" in proc.stderr  # the shutdown budget alone does not
