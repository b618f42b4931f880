# SPDX-License-Identifier: Apache-2.0
"""Config reloads without root: procfs probes over the real /proc, the config in a ConfigMap-style
volume (tests/configmap.py), an editor's rename, a plain write, POST /-/reload; a bad config."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from otel_kubeskoop import reconfigure
from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import ConfigError, load
from otel_kubeskoop.probe import Event
from tests.configmap import ConfigMapVolume
from tests.helpers import MemoryExporter
from tests.otlp_receiver import OTLPReceiver

APPLY_WITHIN = 5.0  # seconds from a file change to the new probe set running
NODE = {"service.name": "otel-kubeskoop"}  # the node's resource


@pytest.fixture
def no_kubernetes(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def document(tmp_path, probes, **extra):
    return {"address": "127.0.0.1:0", "otlp": {"interval": 1}, "reload": {"debounce": 0.1, "http": True},
            "eventStream": {"path": str(tmp_path / "events.sock")},
            "metrics": {"probes": [{"name": p} for p in probes]}, **extra}


def running(agent):
    return sorted(r.name for r in agent.runtime.runs if r.state.value == "running")


def wait_for(predicate, timeout=APPLY_WITHIN):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s")


def post(agent, path):
    req = urllib.request.Request(f"http://{agent.server.bound}{path}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def volume_agent(no_kubernetes, tmp_path):
    volume = ConfigMapVolume(tmp_path / "cm")
    volume.write(document(tmp_path, ["udp", "tcp"]))
    agent = Agent(load(volume.path), metric_exporter=MemoryExporter())
    agent.start()
    try:
        yield volume, agent
    finally:
        agent.stop()


def test_three_configmap_swaps_each_applied_and_unchanged_probes_untouched(volume_agent, tmp_path):
    volume, agent = volume_agent
    wait_for(lambda: agent.cycles > 0)
    udp = next(r.probe for r in agent.runtime.runs if r.name == "udp")
    sets = (["udp", "netdev"], ["udp", "netdev", "sock"], ["udp"])
    for i, probes in enumerate(sets, start=2):
        t0 = time.monotonic()
        volume.write(document(tmp_path, probes))
        took = wait_for(lambda: running(agent) == sorted(probes)) - t0
        assert took < APPLY_WITHIN
        wait_for(lambda: agent.reloader.generation == i)
        assert next(r.probe for r in agent.runtime.runs if r.name == "udp") is udp  # never restarted
    assert agent.reloader.counts["applied"] == 3 and agent.reloader.counts["failed"] == 0
    assert agent.reloader.status()["last_reload"]["changes"] == {"removed": ["netdev", "sock"]}


def test_a_bad_config_changes_nothing_and_is_shown_as_config_validate_prints_it(volume_agent, tmp_path, caplog):
    volume, agent = volume_agent
    wait_for(lambda: agent.cycles > 0)
    bad = yaml.safe_dump(document(tmp_path, ["udp", "nosuchprobe"]))
    volume.write(bad)
    wait_for(lambda: agent.reloader.counts["failed"] == 1)
    volume.write(bad)  # the same text again: not a reload
    volume.write("# edited\n" + bad)  # another text, the same error: counted, not logged again
    wait_for(lambda: agent.reloader.counts["failed"] == 2)
    time.sleep(0.5)
    assert agent.reloader.counts["failed"] == 2
    with pytest.raises(ConfigError) as validate:
        load(volume.path)
    def served() -> dict:
        return json.loads(urllib.request.urlopen(f"http://{agent.server.bound}/status", timeout=5).read())

    wait_for(lambda: (served()["config"]["last_reload"] or {}).get("result") == "failed")  # the next cycle's
    status = served()
    assert status["config"]["generation"] == 1
    assert status["config"]["last_reload"]["error"] == str(validate.value)
    assert "config.probes" not in str(validate.value) and "nosuchprobe" in str(validate.value)
    assert running(agent) == ["tcp", "udp"]
    logged = [r for r in caplog.records if "config reload" in r.getMessage() and "failed" in r.getMessage()]
    assert len(logged) == 1  # once per distinct error


def test_editor_rename_and_plain_write_are_seen(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(document(tmp_path, ["udp"])))
    agent = Agent(load(str(path)), metric_exporter=MemoryExporter())
    agent.start()
    try:
        tmp = tmp_path / ".config.yaml.swp"
        tmp.write_text(json.dumps(document(tmp_path, ["udp", "tcp"])))
        os.rename(tmp, path)
        wait_for(lambda: running(agent) == ["tcp", "udp"])
        with open(path, "w") as f:  # in place, as `>` does
            f.write(json.dumps(document(tmp_path, ["tcp"])))
        wait_for(lambda: running(agent) == ["tcp"])
        assert agent.reloader.generation == 3
    finally:
        agent.stop()


def test_post_reload_is_off_unless_enabled_and_answers_with_the_outcome(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(document(tmp_path, ["udp"], reload={"watch": False})))
    agent = Agent(load(str(path)), metric_exporter=MemoryExporter())
    agent.start()
    try:
        assert post(agent, "/-/reload")[0] == 403
        path.write_text(json.dumps(document(tmp_path, ["udp"], reload={"watch": False, "http": True})))
        agent.reloader.reload("test")  # turns reload.http on
        code, body = post(agent, "/-/reload")
        assert code == 200 and json.loads(body)["result"] == "unchanged"
        path.write_text(json.dumps(document(tmp_path, ["udp"], reload={"watch": True, "http": True},
                                           otlp={"interval": 2})))
        code, body = post(agent, "/-/reload")
        outcome = json.loads(body)
        assert code == 200 and outcome["result"] == "partial", outcome
        assert outcome["changes"]["settings"] == ["otlp.interval"]
        assert outcome["changes"]["not_applied"] == {"reload.watch": "the watch is set up at start"}
        assert agent.config.interval == 2 and agent.config.raw.reload.watch is False
    finally:
        agent.stop()


def test_every_changed_setting_is_named_applied_or_kept(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(document(tmp_path, ["udp"], reload={"watch": False, "debounce": 0.1})))
    agent = Agent(load(str(path)), metric_exporter=MemoryExporter())
    agent.start()
    try:
        compat = agent.compat
        path.write_text(json.dumps(document(tmp_path, ["udp"], reload={"watch": False, "debounce": 2},
                                           shutdownTimeout=7, compat={"maxTupleSeries": 50})))
        assert agent.reloader.reload("test") == "partial"
        changes = agent.reloader.last["changes"]
        assert changes["settings"] == ["shutdownTimeout", "compat.maxTupleSeries"]
        assert changes["not_applied"] == {"reload.debounce": "the watch is set up at start"}
        assert agent.config.shutdown_timeout == 7 and agent.config.raw.reload.debounce == 0.1
        assert agent.compat is not compat and agent.config.raw.compat.max_tuple_series == 50
        assert agent.reloader.generation == 2
    finally:
        agent.stop()


def test_the_readme_names_every_setting_a_reload_keeps_with_its_reason():
    by_reason = defaultdict(list)
    for key, reason in reconfigure.NOT_LIVE.values():
        by_reason[reason].append(key)
    for key in reconfigure.NOT_LIVE_RELOAD.values():
        by_reason[reconfigure.WATCH_SET_UP].append(key)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for reason, keys in by_reason.items():
        row = f"| {', '.join(f'`{k}`' for k in keys)} | {reason} |"
        assert row in readme, row


def test_exporters_sinks_and_compat_change_live_and_the_series_go_on(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"
    sink = tmp_path / "events.jsonl"
    with OTLPReceiver() as first, OTLPReceiver() as second:
        doc = document(tmp_path, ["udp"], reload={"watch": False}, nodeName="n1",
                       otlp={"interval": 1, "endpoint": first.http_endpoint})
        path.write_text(json.dumps(doc))
        agent = Agent(load(str(path)))
        agent.start()
        try:
            first.wait_for(lambda: first.points("kubeskoop.udp.noports", resource=NODE), timeout=10)
            (before,) = first.points("kubeskoop.udp.noports", resource=NODE, last=True)
            assert urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5).status == 200
            doc["otlp"]["endpoint"] = second.http_endpoint
            doc["compat"] = {"enabled": False}
            doc["event"] = {"sinks": [{"name": "file", "args": {"path": str(sink)}}]}
            path.write_text(json.dumps(doc))
            assert agent.reloader.reload("test") == "applied"
            assert agent.reloader.last["changes"] == {
                "settings": ["otlp", "event.sinks", "compat.enabled"]}
            second.wait_for(lambda: second.points("kubeskoop.udp.noports", resource=NODE), timeout=10)
            (after,) = second.points("kubeskoop.udp.noports", resource=NODE, last=True)
            assert after.start_time_unix_nano == before.start_time_unix_nano  # the same series, going on
            with pytest.raises(urllib.error.HTTPError) as gone:
                urllib.request.urlopen(f"http://{agent.server.bound}/metrics", timeout=5)
            assert gone.value.code == 404
            sent = len(first.log_records())
            agent.events.emit(Event("kubeskoop.test.synthetic", "TEST", None, (("network.transport", "udp"),)))
            agent.events.flush()
            second.wait_log_requests(1)
            assert len(second.log_records("kubeskoop.test.synthetic")) == 1
            assert len(first.log_records()) == sent
            (line,) = sink.read_text().splitlines()
            assert json.loads(line)["event_name"] == "kubeskoop.test.synthetic"
        finally:
            agent.stop()
