# SPDX-License-Identifier: Apache-2.0
"""Every config upstream KubeSkoop ships loads unchanged, one test per source
(tests/fixtures/upstream/README.md says where each comes from). Keys upstream ignores are ignored
here with one warning naming them; our own keys stay strict."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from otel_kubeskoop.cli import main
from otel_kubeskoop.config import ConfigError, load, parse
from otel_kubeskoop.config_upstream import UPSTREAM_ARGS
from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests/fixtures/upstream"
HELM_METRICS = ["conntrack", "qdisc", "netdev", "io", "sock", "tcpsummary", "tcp", "tcpext", "udp", "packetloss",
                "flow", "tcpretrans"]
HELM_EVENTS = ["tcpreset", "packetloss", "tcpretrans"]
DEBUGMODE = "debugmode (did you mean 'debugMode'? keys are case-sensitive, as upstream's are)"


def configmap_text(name: str) -> str:
    """``config.yaml`` of a ConfigMap manifest, as the kubelet writes it into the pod."""
    return yaml.safe_load((UPSTREAM / name).read_text())["data"]["config.yaml"]


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load(str(path), environ={})


def args(cfg, kind: Kind, name: str) -> dict:
    (probe,) = [p for p in cfg.probes if p.kind is kind and p.name == name]
    return probe.args.model_dump(by_alias=True)


def test_helm_chart_default_render(tmp_path):
    cfg = load_text(tmp_path, configmap_text("helm-configmap-default.yaml"))
    assert cfg.probe_names(Kind.METRICS) == HELM_METRICS
    assert cfg.probe_names(Kind.EVENTS) == HELM_EVENTS
    assert args(cfg, Kind.METRICS, "flow")["enablePortInLabel"] is False
    assert args(cfg, Kind.EVENTS, "packetloss")["enableStack"] is False
    assert cfg.address == ":9102" and [s.name for s in cfg.sinks] == ["stderr"]
    assert cfg.additional_labels == ()  # `additionalLabels: null`
    assert not cfg.debug  # `debugmode` is not upstream's `debugMode`, so upstream ignores it too
    assert cfg.ignored == (DEBUGMODE,)
    assert cfg.warning == f"{tmp_path / 'config.yaml'}: ignored, as upstream KubeSkoop ignores them: {DEBUGMODE}"


def test_helm_chart_render_has_the_probes_of_its_values():
    values = yaml.safe_load((UPSTREAM / "helm-values.yaml").read_text())["config"]
    rendered = yaml.safe_load(configmap_text("helm-configmap-default.yaml"))
    assert rendered["metrics"]["probes"] == values["metricProbes"]
    assert rendered["event"]["probes"] == values["eventProbes"]
    assert rendered["event"]["sinks"] == values["eventSinks"]


def test_helm_chart_render_with_additional_labels(tmp_path):
    values = yaml.safe_load((UPSTREAM / "helm-values-additional-labels.yaml").read_text())["config"]
    cfg = load_text(tmp_path, configmap_text("helm-configmap-additional-labels.yaml"))
    assert [f"{k}={v}" for k, v in cfg.additional_labels] == values["additionalLabels"]
    assert cfg.additional_labels == (("application", "${labels:application}"), ("environment", "production"))
    assert cfg.probe_names(Kind.METRICS) == HELM_METRICS and cfg.ignored == (DEBUGMODE,)


def test_shipped_compat_config_is_the_chart_render():
    ours = (ROOT / "config/kubeskoop-compat.yaml").read_text()
    body = "".join(line for line in ours.splitlines(keepends=True) if not line.startswith("#"))
    assert body == configmap_text("helm-configmap-default.yaml") + "\n"


def test_skoopbundle(tmp_path):
    cfg = load_text(tmp_path, configmap_text("skoopbundle-configmap.yaml"))
    assert cfg.probe_names(Kind.METRICS) == [*HELM_METRICS[:9], "socketlatency", *HELM_METRICS[9:]]
    assert cfg.probe_names(Kind.EVENTS) == HELM_EVENTS
    assert [(s.name, s.addr) for s in cfg.sinks] == [("stderr", None), ("loki", "loki-service")]
    assert cfg.debug and cfg.address == ":9102"
    assert cfg.warning is None


def test_net_exporter_config():
    cfg = load(str(UPSTREAM / "net-exporter-config.yaml"), environ={})
    assert "kernellatency" in cfg.probe_names(Kind.METRICS)
    assert cfg.probe_names(Kind.EVENTS) == ["biolatency", "kernellatency", "packetloss", "tcpreset", "tcpretrans"]
    assert cfg.debug and cfg.warning is None


def test_docs_configuration_example():
    cfg = load(str(UPSTREAM / "docs-configuration-example.yaml"), environ={})
    # The example lists `info`, which upstream has since removed; the rest load.
    assert cfg.probe_names(Kind.METRICS) == ["netdev", "io", "socketlatency", "packetloss", "sock", "tcpsummary",
                                             "tcp", "tcpext", "udp", "flow"]
    assert [(s.name, s.addr) for s in cfg.sinks] == [("stderr", None), ("loki", "loki-service")]
    assert cfg.ignored == (DEBUGMODE, "metrics.probes[0] (probe 'info': removed from KubeSkoop in commit fc83d12; "
                                      "its kubeskoop_info_* series are not served)")


def test_docs_sidecar_configmap(tmp_path):
    cfg = load_text(tmp_path, configmap_text("docs-sidecar-configmap.yaml"))
    assert cfg.probe_names(Kind.METRICS) == ["netdev", "io", "sock", "tcpsummary", "tcp", "tcpext", "udp"]
    assert cfg.ignored == (DEBUGMODE,)


def test_helm_repository_chart_with_the_installation_guide_values(tmp_path):
    values = yaml.safe_load((UPSTREAM / "docs-installation-values.yaml").read_text())["config"]
    cfg = load_text(tmp_path, configmap_text("helmrepo-configmap-installation-values.yaml"))
    assert cfg.probe_names(Kind.METRICS) == [p["name"] for p in values["metricProbes"]]
    assert cfg.probe_names(Kind.EVENTS) == [p["name"] for p in values["eventProbes"]]
    assert cfg.ignored == (DEBUGMODE,)  # rendered as `debugmode: ` (the value is missing)


def test_layout_before_2023_loads_and_says_it_runs_nothing(tmp_path):
    cfg = load_text(tmp_path, configmap_text("vagrant-skoop-deploy-configmap.yaml"))
    assert cfg.probes == () and cfg.debug
    assert [i.split(" ")[0] for i in cfg.ignored] == ["metric_config", "event_config"]
    assert "probes now go in metrics.probes" in cfg.ignored[0]


def test_null_means_not_set_for_every_upstream_key():
    cfg = parse({"debugMode": None, "port": None, "address": None, "enableController": None, "controllerAddr": None,
                 "metrics": {"probes": None, "additionalLabels": None},
                 "event": {"probes": [{"name": "packetloss", "args": {"enableStack": None}}], "sinks": None}},
                "cfg.yaml", environ={})
    assert cfg.address == ":9102" and not cfg.debug and cfg.warning is None
    assert args(cfg, Kind.EVENTS, "packetloss")["enableStack"] is False
    assert parse({"metrics": None, "event": None}, environ={}).probes == ()


def test_unknown_keys_upstream_ignores_are_named_in_one_warning():
    cfg = parse({"debugmode": True, "metric": {}, "someTool": {"x": 1},
                 "metrics": {"additionalLabel": ["a=b"], "probes": [{"name": "flow", "arg": {},
                                                                     "args": {"interfacename": "eth0", "enablePort": 1}}]},
                 "event": {"sinks": [{"name": "loki", "args": {"addr": "l", "adr": "x"}}]}},
                "cfg.yaml", environ={})
    assert cfg.ignored == (
        DEBUGMODE, "metric (did you mean 'metrics'?)", "someTool",
        "metrics.additionalLabel (did you mean 'additionalLabels'?)", "metrics.probes[0].arg (did you mean 'args'?)",
        "metrics.probes[0].args.enablePort", "event.sinks[0].args.adr (did you mean 'addr'?)")
    assert args(cfg, Kind.METRICS, "flow")["interfaceName"] == "eth0"  # case-insensitive, as mapstructure
    assert cfg.warning.count("ignored") == 1 and cfg.debug is False


@pytest.mark.parametrize("data,path,msg", [
    ({"nodename": "n"}, "nodename", "unknown key (did you mean 'nodeName'?)"),
    ({"otlpp": {}}, "otlpp", "unknown key (did you mean 'otlp'?)"),
    ({"procroot": "/host/proc"}, "procroot", "unknown key (did you mean 'procRoot'?)"),
    ({"otlp": {"endpont": "http://c:4318"}}, "otlp.endpont", "unknown key (did you mean 'endpoint'?)"),
    ({"compat": {"enable": False}}, "compat.enable", "unknown key (did you mean 'enabled'?)"),
    ({"bpfStats": {"on": True}}, "bpfStats.on", "unknown key (known keys: enabled)"),
    ({"event": {"probes": [{"name": "tcpreset", "args": {"eventrte": 5}}]}},
     "event.probes[0].args.eventrte", "unknown argument (did you mean 'eventRate'?)"),
])
def test_our_own_keys_stay_strict(data, path, msg):
    with pytest.raises(ConfigError) as exc:
        parse(data, "cfg.yaml", environ={})
    assert exc.value.problems == [(path, msg)]


def test_upstream_argument_names_are_arguments_of_our_probes():
    for probe, names in UPSTREAM_ARGS.items():
        ours = {info.alias or n for n, info in REGISTRY[probe].args.model_fields.items()}
        assert set(names) <= ours, probe


def test_config_validate_prints_the_warning(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(configmap_text("helm-configmap-default.yaml"))
    res = CliRunner().invoke(main, ["config", "validate", str(path)])
    assert res.exit_code == 0, res.output
    assert f"warning: {path}: ignored, as upstream KubeSkoop ignores them: {DEBUGMODE}" in res.output
