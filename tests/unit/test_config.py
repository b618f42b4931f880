# SPDX-License-Identifier: Apache-2.0
from pathlib import Path

import pytest
from click.testing import CliRunner

from otel_kubeskoop.cli import main
from otel_kubeskoop.config import CONFIG_ERROR, ConfigError, load, parse
from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def problems(data, environ=None):
    with pytest.raises(ConfigError) as exc:
        parse(data, "cfg.yaml", environ={} if environ is None else environ)
    return exc.value.problems


def test_default_config_loads_default_probes():
    cfg = load(str(ROOT / "config/default.yaml"), environ={})
    assert cfg.probe_names(Kind.METRICS) == ["netdev", "tcp", "udp", "ip", "tcpext", "sock", "softnet"]
    assert cfg.interval == 15
    assert cfg.address == ":9102"
    assert not cfg.otlp.enabled


def test_upstream_helm_config_loads_unchanged():
    cfg = load(str(ROOT / "config/kubeskoop-compat.yaml"), environ={})
    # Every upstream probe name loads, with its args.
    assert {p.name for p in cfg.probes} <= set(REGISTRY)
    assert {(p.name, p.kind) for p in cfg.probes} >= {("netdev", Kind.METRICS), ("conntrack", Kind.METRICS),
                                                      ("packetloss", Kind.EVENTS)}
    assert cfg.address == ":9102"  # from the deprecated `port`
    assert cfg.additional_labels == ()  # the chart renders `additionalLabels: null`
    assert [s.name for s in cfg.sinks] == ["stderr"]


def test_unknown_key_of_our_own_section_names_the_key_and_known_keys():
    (path, msg), = problems({"compat": {"port": 1}})
    assert path == "compat.port"
    assert msg == "unknown key (known keys: enabled, maxTupleSeries)"


def test_wrong_types_use_yaml_spelling():
    found = dict(problems({"metrics": {"additionalLabels": "app=x"}, "debugMode": "maybe", "port": "x"}))
    assert "metrics.additionalLabels" in found
    assert "debugMode" in found and "got 'maybe'" in found["debugMode"]
    assert "port" in found


def test_unknown_probe_name_lists_known_ones():
    (path, msg), = problems({"metrics": {"probes": [{"name": "netdevv"}]}})
    assert path == "metrics.probes[0].name"
    assert "unknown metrics probe 'netdevv'" in msg and "netdev" in msg


def test_metrics_probe_under_event_is_an_error():
    (path, msg), = problems({"event": {"probes": [{"name": "netdev"}]}})
    assert path == "event.probes[0].name" and "has no events" in msg


def test_args_on_a_probe_without_args_are_ignored_as_upstream_does():
    cfg = parse({"metrics": {"probes": [{"name": "tcp", "args": {"foo": 1}}]}}, "cfg.yaml", environ={})
    assert cfg.ignored == ("metrics.probes[0].args.foo",)


def test_duplicate_probe_is_an_error():
    (path, msg), = problems({"metrics": {"probes": [{"name": "tcp"}, {"name": "tcp"}]}})
    assert path == "metrics.probes[1].name" and "twice" in msg


def test_sink_validation():
    found = dict(problems({"event": {"sinks": [{"name": "file"}, {"name": "loki", "args": {"addr": "loki", "port": 1}},
                                               {"name": "kafka"}]}}))
    assert "needs a non-empty string 'path'" in found["event.sinks[0].args.path"]
    assert "event.sinks[1].args.port" not in found  # upstream's loki sink reads only `addr`
    assert "event.sinks[2].name" in found


def test_bad_additional_label():
    (path, msg), = problems({"metrics": {"additionalLabels": ["novalue"]}})
    assert path == "metrics.additionalLabels" and "name=value" in msg


@pytest.mark.parametrize("address,expected", [
    (":9102", ":9102"), ("tcp://127.0.0.1:9200", "127.0.0.1:9200"), ("unix:///run/ks.sock", "unix:///run/ks.sock"),
    ("", None),
])
def test_address_forms(address, expected):
    assert parse({"address": address}, environ={}).address == expected


def test_bad_address():
    (path, msg), = problems({"address": "nohost"})
    assert path == "address" and "host:port" in msg


def test_interval_precedence():
    assert parse({}, environ={"OTEL_METRIC_EXPORT_INTERVAL": "5000"}).interval == 5
    assert parse({"otlp": {"interval": 2}}, environ={"OTEL_METRIC_EXPORT_INTERVAL": "5000"}).interval == 2
    (path, msg), = problems({}, {"OTEL_METRIC_EXPORT_INTERVAL": "soon"})
    assert "OTEL_METRIC_EXPORT_INTERVAL" in msg


def test_otlp_resolution():
    assert not parse({}, environ={}).otlp.enabled
    cfg = parse({}, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert cfg.otlp.enabled and cfg.otlp.protocol == "http/protobuf" and cfg.otlp.endpoint is None
    cfg = parse({}, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert cfg.otlp.protocol == "grpc"
    cfg = parse({"otlp": {"endpoint": "http://x:4317", "protocol": "grpc", "headers": {"a": "b"}, "timeout": 3}},
                environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert (cfg.otlp.enabled, cfg.otlp.protocol, cfg.otlp.endpoint, cfg.otlp.timeout) == (True, "grpc", "http://x:4317", 3)
    assert not parse({"otlp": {"endpoint": "http://x"}}, environ={"OTEL_SDK_DISABLED": "true"}).otlp.enabled
    (path, msg), = problems({}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert "http/json" in msg


def test_node_name_precedence():
    assert parse({"nodeName": "a"}, environ={"NODE_NAME": "b"}).node_name == "a"
    assert parse({}, environ={"NODE_NAME": "b", "INSPECTOR_NODENAME": "c"}).node_name == "b"
    assert parse({}, environ={"INSPECTOR_NODENAME": "c"}).node_name == "c"


def test_cli_validate_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("metrics:\n  probes:\n    - name: netdev\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  probes:\n    - name: nope\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("metrics: [\n")
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "validate", str(good)])
    assert ok.exit_code == 0 and "valid" in ok.output
    res = runner.invoke(main, ["config", "validate", str(bad)])
    assert res.exit_code == CONFIG_ERROR
    assert f"{bad}: metrics.probes[0].name: unknown metrics probe 'nope'" in res.output
    res = runner.invoke(main, ["config", "validate", str(broken)])
    assert res.exit_code == CONFIG_ERROR and "line 2" in res.output and "invalid YAML" in res.output
    res = runner.invoke(main, ["config", "validate", str(tmp_path / "missing.yaml")])
    assert res.exit_code == CONFIG_ERROR and "cannot read" in res.output


def test_run_with_invalid_config_exits_2_before_starting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("otlp:\n  protocol: carrier-pigeon\n")
    res = CliRunner().invoke(main, ["run", "-c", str(bad)])
    assert res.exit_code == CONFIG_ERROR and "otlp.protocol" in res.output
