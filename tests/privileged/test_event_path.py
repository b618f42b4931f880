# SPDX-License-Identifier: Apache-2.0
"""The event path on the real kernel, end to end: tcpreset's ring-buffer records, read in batches
and written in wire form, reach an OTLP/HTTP receiver as exactly the log records the official
opentelemetry-proto types build from the same records decoded the way the agent did before
(``tests/eventref.py``); and what the kernel saw is delivered or lost by reason, exactly, with a
stalled live-stream client attached (its losses counted where the stream counts them)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from otel_kubeskoop.agent import Agent
from otel_kubeskoop.config import parse
from otel_kubeskoop.probes.tcpreset import TABLE
from otel_kubeskoop.vocabulary import instruments as I
from tests.eventref import log_record, typecount_event
from tests.otlp_receiver import OTLPReceiver
from tests.privileged.netnsutil import netns, require_root, tcp_refused

require_root()

pytestmark = pytest.mark.privileged

CONNECTS = 1000  # two events each: the reset sent (nosock) and the reset received


def kernel_seen(probe: Any) -> int:
    return sum(v for _, v in probe.bpf.map("counters").items()) + (probe.bpf.map("counters_full").lookup(0) or 0)


def outcomes(agent: Agent, probe: Any) -> int:
    losses = sum(agent.events.lost.values()) + sum(probe.bpf.losses().values()) + probe.bpf.ctx.decode_errors
    return sum(agent.events.delivered.values()) + losses


def stream_dropped(agent: Agent) -> int:
    (dropped,) = [s.value for s in agent.stream.samples() if s.instrument is I.AGENT_STREAM_DROPPED]
    return int(dropped)


def test_records_reach_otlp_as_before_and_every_event_is_accounted_for(tmp_path) -> None:
    with OTLPReceiver() as rx, netns() as ns:
        config = parse({
            "address": "", "nodeName": "n1",
            "event": {"probes": [{"name": "tcpreset", "args": {"eventRate": 0}}]},
            "otlp": {"endpoint": rx.http_endpoint},
            "eventStream": {"path": str(tmp_path / "events.sock"), "clientQueue": 16},
        }, "test", environ={})
        agent = Agent(config)
        stalled = socket.socket(socket.AF_UNIX)
        try:
            agent.open()
            agent.cycle()
            probe = next(run.probe for run in agent.runtime.runs if run.name == "tcpreset")
            stalled.connect(config.raw.event_stream.path)
            stalled.sendall(b'{"mode": "events"}\n')  # and never reads
            deadline = time.monotonic() + 5
            while not [s for s in agent.stream.samples() if s.instrument is I.AGENT_STREAM_CLIENTS and s.value == 1]:
                assert time.monotonic() < deadline, "the stalled client was not accepted"
                time.sleep(0.02)
            raws: list[bytes] = []
            decode = probe.decoder.decode
            probe.decoder.decode = lambda raw, offset: (raws.append(raw), decode(raw, offset))[1]
            seen0, out0 = kernel_seen(probe), outcomes(agent, probe)

            tcp_refused(ns, CONNECTS)
            deadline = time.monotonic() + 10
            while outcomes(agent, probe) - out0 < kernel_seen(probe) - seen0:
                assert time.monotonic() < deadline, "events still missing after 10 s"
                time.sleep(0.05)
            agent.events.flush()
            assert outcomes(agent, probe) - out0 == kernel_seen(probe) - seen0
            dropped = stream_dropped(agent)
        finally:
            stalled.close()
            agent.stop()

        ours = [r for req in rx.log_requests() for rl in req.resource_logs
                if any(kv.key == "kubeskoop.netns.inode" and kv.value.int_value == ns.inode
                       for kv in rl.resource.attributes)
                for sl in rl.scope_logs for r in sl.log_records]
    assert len(ours) == 2 * CONNECTS
    mine = [raw for raw in raws if int.from_bytes(raw[8:12], "little") == ns.inode]
    assert len(mine) == 2 * CONNECTS
    for raw, got in zip(mine, ours):
        expected = log_record(typecount_event(TABLE, raw, probe.names, probe.bpf.clock_offset),
                              got.observed_time_unix_nano)
        assert got == expected
    # The stalled client took 16 into its queue and a socket buffer's worth; the rest it lost.
    assert dropped > 0 and dropped <= len(raws)
