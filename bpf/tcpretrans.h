/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * tcpretrans: the kernel <-> user-space contract of tcpretrans.bpf.c: retransmitted TCP segments,
 * counted per (namespace, type) in "counters" (struct typecount_key, typecount.h) and, when
 * events are on, sent one by one. Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __TCPRETRANS_H
#define __TCPRETRANS_H

#include "events.h"
#include "tuple.h"
#include "typecount.h"

#define TCPRETRANS_MAX_COUNTERS 16384
#define TCPRETRANS_MAX_TUPLES 10240 /* connections with counts (upstream keeps 102400) */

/* event_header.type, and typecount_key.type: what kind of retransmission. */
enum tcpretrans_type {
	TCPRETRANS_SYN = 1,    /* a SYN again: the socket is in SYN_SENT */
	TCPRETRANS_SYNACK = 2, /* a SYN-ACK again: tcp_retransmit_synack, or a socket in SYN_RECV */
	TCPRETRANS_LOSS = 3,   /* after a retransmission timeout: icsk_ca_state is TCP_CA_Loss */
	TCPRETRANS_FAST = 4,   /* any other: fast retransmit, SACK/RACK recovery, loss probe */
};

/*
 * A ring-buffer record: one retransmission. hdr.aux: the socket's TCP state (for SYNACK from
 * tcp_retransmit_synack, the request socket's: TCP_NEW_SYN_RECV). Source = the local end,
 * destination = the peer.
 */
struct tcpretrans_event {
	struct event_header hdr;
	struct flow_tuple tuple;
};

#endif /* __TCPRETRANS_H */
