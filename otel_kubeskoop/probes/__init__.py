# SPDX-License-Identifier: Apache-2.0
"""The explicit probe registry, and the tables derived from it.

Adding a probe is one line in ``ALL_PROBES`` (see CONTRIBUTING.md). Every instrument and event
the agent emits is a probe's (declared in its own module and listed in its ``SPEC``) or one of
the agent's own (``vocabulary/instruments.py``); nothing else lists them.
"""

from __future__ import annotations

from otel_kubeskoop.probe import ProbeSpec
from otel_kubeskoop.probes import ip, ipvs, netdev, sock, softnet, tcp, tcpext, udp
from otel_kubeskoop.probes import fd, io, rdma
from otel_kubeskoop.probes import packetloss, tcpreset, tcpretrans
from otel_kubeskoop.probes import conntrack, qdisc, tcpsummary
from otel_kubeskoop.probes import biolatency, netiftxlat, softirq, virtcmdlatency
from otel_kubeskoop.probes import flow, kernellatency, socketlatency
from otel_kubeskoop.probes import dns, tcpconnect, tcprtt
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

ALL_PROBES: tuple[ProbeSpec, ...] = (
    netdev.SPEC,
    tcp.SPEC,
    udp.SPEC,
    ip.SPEC,
    tcpext.SPEC,
    sock.SPEC,
    softnet.SPEC,
    ipvs.SPEC,
    fd.SPEC,
    io.SPEC,
    rdma.SPEC,
    packetloss.SPEC,
    tcpreset.SPEC,
    tcpretrans.SPEC,
    conntrack.SPEC,
    qdisc.SPEC,
    tcpsummary.SPEC,
    netiftxlat.SPEC,
    softirq.SPEC,
    biolatency.SPEC,
    virtcmdlatency.SPEC,
    socketlatency.SPEC,
    kernellatency.SPEC,
    flow.SPEC,
    tcprtt.SPEC,
    tcpconnect.SPEC,
    dns.SPEC,
)

REGISTRY: dict[str, ProbeSpec] = {spec.name: spec for spec in ALL_PROBES}

# Every instrument, in registry order, then the agent's own.
INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    tuple(inst for spec in ALL_PROBES for inst in spec.instruments) + I.AGENT)
EVENTS: tuple[EventSpec, ...] = tuple(event for spec in ALL_PROBES for event in spec.events)
