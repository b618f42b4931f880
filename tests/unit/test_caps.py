# SPDX-License-Identifier: Apache-2.0
"""Caps on what the agent tracks (issue 11, finding 6): the resource directory's and the metric
pipeline's, counted and exported as ``kubeskoop.agent.overflow{kubeskoop.cap}``; and the namespace
cap the descriptor limit sets, recomputed when a reload changes the probes or the limit changed.
The compat endpoint's and discovery's counts are asserted in test_compat.py and topology/test_netns.py."""

from __future__ import annotations

import json
import resource

import pytest

from otel_kubeskoop import limits
from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import load, parse
from otel_kubeskoop.telemetry.pipeline import MetricPipeline
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from tests.helpers import MemoryExporter, cycle, points

NO_INODE = 1  # no network namespace has inode 1: an event from a namespace no scan saw


@pytest.fixture
def no_kubernetes(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def agent(no_kubernetes):
    exporter = MemoryExporter()
    agent = Agent(parse({"address": "", "metrics": {"probes": [{"name": "udp"}]}}, "t", environ={}),
                  metric_exporter=exporter)
    agent.open()
    try:
        yield agent, exporter
    finally:
        agent.stop()


def exported_overflow(exporter: MemoryExporter) -> dict[str, int]:
    got = points(exporter.requests[-1], I.AGENT_OVERFLOW.name)
    return {dict(attrs)[A.CAP]: p["value"] for (_, attrs), p in got.items()}


def test_every_cap_is_exported_from_the_first_cycle_at_zero(agent):
    agent, exporter = agent
    cycle(agent)
    assert exported_overflow(exporter) == dict.fromkeys(I.CAPS, 0)


def test_the_directory_forgets_namespaces_no_scan_saw_and_counts_lookups_past_its_cap(agent):
    agent, exporter = agent
    cycle(agent)
    held = len(agent.directory)
    agent.directory.event_resource(NO_INODE)
    assert len(agent.directory) == held + 1
    agent.scan()
    # Full from here on. Counted, not found: a namespace the scan did not see is not kept. (The
    # machine's own namespaces may come and go between two scans, so no count before it is used.)
    held = agent.directory.max_resources = len(agent.directory)
    for _ in range(3):
        res = agent.directory.event_resource(NO_INODE)
        assert res.attributes[A.NETNS_INODE] == NO_INODE  # still its own resource, just not kept
    assert len(agent.directory) == held and agent.directory.overflow == 3
    cycle(agent)
    assert exported_overflow(exporter)[I.CAP_DIRECTORY_RESOURCES] == 3


def test_series_past_the_pipelines_cap_are_counted_and_the_count_is_never_among_them(agent):
    agent, exporter = agent
    # Room for the caps' counts only: the agent's own samples go first, those first of all.
    agent.pipeline = MetricPipeline(exporter, agent.directory, max_series=len(I.CAPS))
    cycle(agent)
    refused = agent.pipeline.overflow["series"]
    assert refused > 0 and agent.overflow()[I.CAP_METRIC_SERIES] == refused
    cycle(agent)
    assert exported_overflow(exporter)[I.CAP_METRIC_SERIES] == refused  # the count the cycle began with


def test_a_reload_recomputes_the_namespace_cap_from_the_probes_and_the_limit(no_kubernetes, tmp_path):
    path = tmp_path / "config.yaml"

    def write(probes):
        path.write_text(json.dumps({"address": "", "reload": {"watch": False},
                                    "metrics": {"probes": [{"name": p} for p in probes]}}))

    write(["udp"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    agent = Agent(load(str(path)), metric_exporter=MemoryExporter())
    agent.start()
    try:
        assert agent.discovery.max_namespaces == (soft - limits.RESERVE) // 3
        write(["udp", "qdisc", "tcpsummary"])  # a netlink socket each, per namespace
        agent.reloader.reload("test")
        assert agent.discovery.max_namespaces == (soft - limits.RESERVE) // 5
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # prlimit, from outside
        write(["udp", "qdisc"])
        agent.reloader.reload("test")
        assert agent.fd_limit == 1024
        assert agent.discovery.max_namespaces == (1024 - limits.RESERVE) // 4
    finally:
        agent.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
