# SPDX-License-Identifier: Apache-2.0
"""tcpreset: TCP resets sent and received, per namespace, as upstream KubeSkoop's four types.

``bpf/tcpreset.bpf.c`` hooks the ``tcp:tcp_send_reset`` and ``tcp:tcp_receive_reset``
tracepoints and tells the types apart from the tracepoint's arguments (Linux 6.10+):

=========  ============================================================================
nosock     sent, ``sk`` NULL: ``tcp_v4_send_reset()``/``tcp_v6_send_reset()`` answering a
           packet that matched no socket (a closed port)
process    sent, ``sk`` and ``skb`` set: the same functions answering a packet that matched a
           socket (full, request or time-wait), as upstream's kprobe with ``sk != NULL``
active     sent, ``skb`` NULL: ``tcp_send_active_reset()`` (close with unread data, SO_LINGER
           0, keepalive or retransmission timeout, memory), which passes NULL because the RST
           answers no packet (``net/ipv4/tcp_output.c``)
receive    ``tcp:tcp_receive_reset``: a socket accepted a RST (``tcp_reset()``)
=========  ============================================================================

Upstream has events only; here each type is also counted in the kernel
(``kubeskoop.tcpreset.total`` by ``kubeskoop.reset.type``), and IPv6 is kept (upstream drops it).
Events carry the kernel's reason for a sent reset (``kubeskoop.reset.reason``, ``enum
sk_rst_reason`` without its prefix: ``NO_SOCKET``, ``TCP_ABORT_ON_CLOSE``; Linux 6.10+), the TCP
state, and the connection as the namespace sees it (source = local end, destination = peer).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from otel_kubeskoop.bpf.generated import tcpreset as contract
from otel_kubeskoop.bpf.generated.tcpreset import TcpresetEvent, TcpresetReason, TcpresetType
from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Scope, Source
from otel_kubeskoop.probes._bpf import RingEventArgs, bpf_requires
from otel_kubeskoop.probes._decode import KernelNames
from otel_kubeskoop.probes._typecount import Typecount, TypecountProbe
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec

RESET_TYPE = "kubeskoop.reset.type"  # nosock, process, active, receive
RESET_REASON = "kubeskoop.reset.reason"  # enum sk_rst_reason name without prefix: NO_SOCKET

TCPRESET_TOTAL = InstrumentSpec(
    "kubeskoop.tcpreset.total", C, "{segment}",
    "TCP resets sent (nosock, process, active) and received (receive)", (RESET_TYPE,),
    key="reset")
INSTRUMENTS = (TCPRESET_TOTAL,)

_EVENT_ATTRIBUTES = (*A.TUPLE, A.NETWORK_CONNECTION_STATE, RESET_TYPE, RESET_REASON)
TCPRESET_NOSOCK = EventSpec(
    "kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK",
    "A RST sent in answer to a packet that matched no socket (a closed port)", _EVENT_ATTRIBUTES)
TCPRESET_PROCESS = EventSpec(
    "kubeskoop.tcpreset.process", "TCPRESET_PROCESS",
    "A RST sent in answer to a packet that matched a socket (bad sequence, time-wait...)", _EVENT_ATTRIBUTES)
TCPRESET_ACTIVE = EventSpec(
    "kubeskoop.tcpreset.active", "TCPRESET_ACTIVE",
    "A RST the stack sent on its own: close with unread data, SO_LINGER 0, timeout, memory", _EVENT_ATTRIBUTES)
TCPRESET_RECEIVE = EventSpec(
    "kubeskoop.tcpreset.receive", "TCPRESET_RECEIVE", "A socket received a RST", _EVENT_ATTRIBUTES)
EVENTS = (TCPRESET_NOSOCK, TCPRESET_PROCESS, TCPRESET_ACTIVE, TCPRESET_RECEIVE)


def reset_reason(value: int, names: KernelNames) -> Iterable[tuple[str, Any]]:
    """``kubeskoop.reset.reason`` of a sent reset (the record's ``reason``), when the kernel gave
    one (Linux 6.10+)."""
    if value == TcpresetReason.TCPRESET_REASON_NONE:
        return ()
    reason = names.rst_reason(value)
    return () if reason is None else ((RESET_REASON, reason),)


#: enum tcpreset_type -> (kubeskoop.reset.type, event)
TABLE = Typecount(
    object=contract.OBJECT,
    record=TcpresetEvent,
    instrument=TCPRESET_TOTAL,
    attribute=RESET_TYPE,
    types={
        TcpresetType.TCPRESET_NOSOCK: ("nosock", TCPRESET_NOSOCK),
        TcpresetType.TCPRESET_PROCESS: ("process", TCPRESET_PROCESS),
        TcpresetType.TCPRESET_ACTIVE: ("active", TCPRESET_ACTIVE),
        TcpresetType.TCPRESET_RECEIVE: ("receive", TCPRESET_RECEIVE),
    },
    extra=reset_reason,
    extra_field="reason",
)


class TcpresetProbe(TypecountProbe):
    TABLE = TABLE


SPEC = ProbeSpec(
    name="tcpreset",
    summary="TCP resets sent (nosock, process, active) and received, per namespace, IPv4 and IPv6",
    kinds=frozenset({Kind.EVENTS, Kind.METRICS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="one hash update per TCP reset sent or received; with events, one ring-buffer "
                  "record per reset up to eventRate per namespace and type",
    default_enabled=False,
    factory=TcpresetProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=RingEventArgs,
    requires=bpf_requires("tracepoints tcp:tcp_send_reset (nosock resets: Linux 6.10+) and "
                          "tcp:tcp_receive_reset"),
)
