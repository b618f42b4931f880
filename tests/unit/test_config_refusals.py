# SPDX-License-Identifier: Apache-2.0
"""Finding 9 of issue 11: each malformed config or environment is refused by ``config validate``
(and so at start), naming the file or variable, the key and the reason."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from otel_kubeskoop.cli import main
from otel_kubeskoop.config import ConfigError, load

PROBES = "metrics:\n  probes:\n  - name: udp\n"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
GOOD_ENV = {ENDPOINT: "http://127.0.0.1:4318"}

# (case, file content, environment, what the error must say)
CASES = [
    ("endpoint not a url (env)", PROBES, {ENDPOINT: "not a url"}, ["OTEL_EXPORTER_OTLP_ENDPOINT", "not a URL"]),
    ("endpoint bad scheme (env)", PROBES, {ENDPOINT: "htp://collector:4318"}, ["OTEL_EXPORTER_OTLP_ENDPOINT", "'htp'"]),
    ("endpoint without scheme (env)", PROBES, {ENDPOINT: "127.0.0.1:4318"}, ["OTEL_EXPORTER_OTLP_ENDPOINT", "http or https"]),
    ("endpoint bad IPv6 (env)", PROBES, {ENDPOINT: "http://[::1:4318"}, ["OTEL_EXPORTER_OTLP_ENDPOINT", "Invalid IPv6"]),
    ("metrics endpoint (env)", PROBES, {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "not a url"}, ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]),
    ("endpoint not a url (file)", PROBES + "otlp:\n  endpoint: not a url\n", {}, ["otlp.endpoint", "not a URL"]),
    ("endpoint without scheme (file)", PROBES + "otlp:\n  endpoint: 127.0.0.1:4318\n", {}, ["otlp.endpoint", "http or https"]),
    ("timeout abc", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}, ["OTEL_EXPORTER_OTLP_TIMEOUT", "milliseconds"]),
    ("logs timeout negative", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "-5"}, ["OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"]),
    ("headers garbage", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_HEADERS": "garbage"}, ["OTEL_EXPORTER_OTLP_HEADERS", "key=value"]),
    ("compression zstdx", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_COMPRESSION": "zstdx"}, ["OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"]),
    ("certificate missing", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent.pem"},
     ["OTEL_EXPORTER_OTLP_CERTIFICATE", "no such file"]),
    ("client key missing", PROBES, {**GOOD_ENV, "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY": "/nonexistent.key"},
     ["OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "no such file"]),
    ("duplicate key", "metrics:\n  probes: []\nmetrics:\n  probes: []\n", {}, ["line 3", "'metrics' given twice", "line 1"]),
    ("duplicate nested key", "otlp:\n  interval: 5\n  interval: 6\n" + PROBES, {}, ["line 3", "'interval' given twice"]),
    ("empty file", "", {}, ["empty"]),
    ("comments only", "# nothing here\n", {}, ["no settings"]),
    ("interval too small", PROBES + "otlp:\n  interval: 0.001\n", {}, ["otlp.interval", "at least 1 s"]),
    ("interval too small (env)", PROBES, {"OTEL_METRIC_EXPORT_INTERVAL": "1"}, ["OTEL_METRIC_EXPORT_INTERVAL", "at least 1000"]),
    ("binary file", b"\x7fELF\x02\x01\x01\x00\x00\x00", {}, ["not a text file"]),
    ("not utf-8", b"metrics: \xff\xfe\n", {}, ["not a UTF-8"]),
    ("unresolvable address", PROBES + "address: no-such-host.invalid:9102\n", {}, ["address", "no-such-host.invalid", "does not resolve"]),
    ("file sink in a missing directory", PROBES + "event:\n  sinks:\n  - name: file\n    args:\n      path: /nonexistent/dir/events.log\n",
     {}, ["event.sinks[0].args.path", "/nonexistent/dir", "does not exist"]),
    ("shutdown budget not positive", PROBES + "shutdownTimeout: 0\n", {}, ["shutdownTimeout"]),
]


def write(tmp_path, content) -> str:
    path = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize(("content", "environ", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_naming_the_file_key_and_reason(tmp_path, content, environ, says):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load(path, environ)
    text = str(caught.value)
    assert text.startswith(path), text
    for word in says:
        assert word in text, text


@pytest.mark.parametrize(("content", "environ", "says"), [c[1:] for c in CASES[:4] + CASES[13:16]],
                         ids=[c[0] for c in CASES[:4] + CASES[13:16]])
def test_config_validate_exits_2_saying_why(tmp_path, monkeypatch, content, environ, says):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["config", "validate", write(tmp_path, content)])
    assert result.exit_code == 2 and all(word in result.output for word in says), result.output


def test_timeouts_are_milliseconds_per_signal():
    from otel_kubeskoop.config import parse

    cfg = parse({}, "t", environ={**GOOD_ENV, "OTEL_EXPORTER_OTLP_TIMEOUT": "10000", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "2500"})
    assert (cfg.otlp.timeout, cfg.otlp.logs_timeout) == (10.0, 2.5)
    assert parse({}, "t", environ={}).otlp.timeout == 10.0
    assert parse({"otlp": {"timeout": 3}}, "t", environ={"OTEL_EXPORTER_OTLP_TIMEOUT": "10000"}).otlp.timeout == 3


def test_good_values_pass(tmp_path):
    env = {**GOOD_ENV, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20d,x=1", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "https://[::1]:4318/base"}
    cfg = load(write(tmp_path, PROBES + f"event:\n  sinks:\n  - name: file\n    args:\n      path: {tmp_path}/e.log\n"), env)
    assert cfg.otlp.enabled and cfg.shutdown_timeout == 20.0


def test_an_address_in_use_is_named_at_start(tmp_path):
    from otel_kubeskoop.agent import Agent
    from otel_kubeskoop.config import parse
    from otel_kubeskoop.outputs import StartError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(StartError) as caught:
            Agent(parse({"address": address}, str(tmp_path / "c.yaml"), environ={}))
    assert f"address: cannot listen on {address!r}" in str(caught.value) and "c.yaml" in str(caught.value)
