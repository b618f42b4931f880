# SPDX-License-Identifier: Apache-2.0
"""tcpretrans: TCP retransmissions per namespace, by kind.

``bpf/tcpretrans.bpf.c`` hooks ``tcp:tcp_retransmit_skb`` and ``tcp:tcp_retransmit_synack`` and
counts each retransmitted segment in the kernel under ``kubeskoop.retransmit.type``:

======  =====================================================================================
syn     ``tcp_retransmit_skb`` on a socket in ``SYN_SENT``: the connect's SYN again
synack  ``tcp_retransmit_synack`` (a request socket's SYN-ACK timer), or ``tcp_retransmit_skb``
        on a socket in ``SYN_RECV`` (a TCP Fast Open server)
loss    ``tcp_retransmit_skb`` while ``inet_csk(sk)->icsk_ca_state == TCP_CA_Loss``: the
        retransmission timer fired (RTO) and ``tcp_enter_loss()`` put the socket in loss
        recovery; every segment it resends until recovery ends is "loss"
fast    any other ``tcp_retransmit_skb``: fast retransmit and SACK/RACK recovery
        (``TCP_CA_Recovery``), tail-loss probes, retransmissions in ``TCP_CA_Open``/``Disorder``
        /``CWR``
======  =====================================================================================

The state and CA state are read from the socket with CO-RE when the tracepoint fires; the
``TCP_CA_Loss`` value comes from the kernel's BTF (``enum tcp_ca_state``). Since Linux 6.17
``tcp_retransmit_skb`` also fires for attempts that sent nothing (its ``err`` argument); those are
not counted. The kernel counts an attempt in ``Tcp: RetransSegs`` before transmitting it, and in
``TcpExt: TCPRetransFail`` when the transmit fails, so the sum over types is RetransSegs less
TCPRetransFail for single-segment retransmissions (the kernel counts each TSO segment in
RetransSegs; the tracepoint fires once per retransmitted skb).

Upstream counts retransmissions per connection instead: the kernel also counts them per 5-tuple
(an LRU of 10240 connections, ``bpf/include/tuples.bpf.h``), and ``kubeskoop.tcpretrans.tuples``
is that view, served with upstream's name and tuple labels on the compat endpoint only. Events
(``kubeskoop.tcpretrans.retransmit``) carry the connection, its state and the kind.
"""

from __future__ import annotations

from otel_kubeskoop.bpf.generated import tcpretrans as contract
from otel_kubeskoop.bpf.generated.tcpretrans import TcpretransEvent, TcpretransType
from otel_kubeskoop.probe import Kind, Overhead, ProbeSpec, Scope, Source
from otel_kubeskoop.probes._bpf import RingEventArgs, bpf_requires
from otel_kubeskoop.probes._typecount import Typecount, TypecountProbe
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.events import EventSpec
from otel_kubeskoop.vocabulary.instruments import C, InstrumentSpec

RETRANSMIT_TYPE = "kubeskoop.retransmit.type"  # syn, synack, loss, fast

TCPRETRANS_TOTAL = InstrumentSpec(
    "kubeskoop.tcpretrans.total", C, "{segment}",
    "TCP segments retransmitted, by kind: syn, synack, loss (after a retransmission timeout), "
    "fast (any other)", (RETRANSMIT_TYPE,), key="retransmit")
# Upstream's series of the same retransmissions: per connection, on the compat endpoint only
# (bpf/tcpretrans.bpf.c "tuples").
TCPRETRANS_TUPLES = InstrumentSpec(
    "kubeskoop.tcpretrans.tuples", C, "{segment}",
    "TCP segments retransmitted, by connection (compat endpoint only)", A.TUPLE, key="tuples",
    compat="kubeskoop_tcpretrans_total", compat_labels=I.TUPLE_COMPAT, otlp=False)
INSTRUMENTS = (TCPRETRANS_TOTAL, TCPRETRANS_TUPLES)

TCPRETRANS_RETRANSMIT = EventSpec(
    "kubeskoop.tcpretrans.retransmit", "TCPRetrans",
    "A TCP segment was retransmitted: its kind (syn, synack, loss, fast), the connection and its state",
    (*A.TUPLE, A.NETWORK_CONNECTION_STATE, RETRANSMIT_TYPE))
EVENTS = (TCPRETRANS_RETRANSMIT,)


#: enum tcpretrans_type -> kubeskoop.retransmit.type, and the event (one for every kind); the
#: per-connection counts (map "tuples") for the compat endpoint
TABLE = Typecount(
    object=contract.OBJECT,
    record=TcpretransEvent,
    instrument=TCPRETRANS_TOTAL,
    attribute=RETRANSMIT_TYPE,
    types={
        TcpretransType.TCPRETRANS_SYN: ("syn", TCPRETRANS_RETRANSMIT),
        TcpretransType.TCPRETRANS_SYNACK: ("synack", TCPRETRANS_RETRANSMIT),
        TcpretransType.TCPRETRANS_LOSS: ("loss", TCPRETRANS_RETRANSMIT),
        TcpretransType.TCPRETRANS_FAST: ("fast", TCPRETRANS_RETRANSMIT),
    },
    tuples=TCPRETRANS_TUPLES,
)


class TcpretransProbe(TypecountProbe):
    TABLE = TABLE


SPEC = ProbeSpec(
    name="tcpretrans",
    summary="TCP retransmissions per namespace, by kind: syn, synack, loss (after RTO), fast",
    kinds=frozenset({Kind.METRICS, Kind.EVENTS}),
    source=Source.BPF,
    scope=Scope.NETNS,
    overhead=Overhead.LOW,
    overhead_note="one hash and one LRU update (per connection, for the compat endpoint) per "
                  "retransmitted TCP segment; with events, one ring-buffer "
                  "record per retransmission up to eventRate per namespace and kind",
    default_enabled=False,
    factory=TcpretransProbe,
    instruments=INSTRUMENTS,
    events=EVENTS,
    args=RingEventArgs,
    requires=bpf_requires("tracepoints tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack"),
)
