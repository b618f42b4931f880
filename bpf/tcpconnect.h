/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * tcpconnect: the kernel <-> user-space contract of tcpconnect.bpf.h: TCP connection attempts
 * and how they ended, counted per (namespace, outcome) in "counters" (struct typecount_key,
 * typecount.h); the connect latency (SYN sent to ESTABLISHED) as a log2 histogram per namespace
 * (latency.h); the same counts and latency per (namespace, peer address) in "remotes" (remote.h),
 * which user space empties every collection; and, when events are on, each failure. Mirrored in
 * otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __TCPCONNECT_H
#define __TCPCONNECT_H

#include "events.h"
#include "tuple.h"
#include "typecount.h"
#include "latency.h"
#include "remote.h"

#define TCPCONNECT_MAX_COUNTERS 16384
#define TCPCONNECT_MAX_HISTS 4096      /* namespaces */
#define TCPCONNECT_MAX_INFLIGHT 16384  /* sockets in SYN_SENT being followed */
#define TCPCONNECT_MAX_REMOTES 4096    /* (namespace, peer) entries between two collections */
#define TCPCONNECT_OUTCOMES 9          /* enum tcpconnect_outcome values, 0 unused */

/* typecount_key.type, and event_header.type for the failures (all but ATTEMPT and ESTABLISHED). */
enum tcpconnect_outcome {
	TCPCONNECT_ATTEMPT = 1,     /* a socket sent its SYN: CLOSE -> SYN_SENT (connect()) */
	TCPCONNECT_ESTABLISHED = 2, /* SYN_SENT -> ESTABLISHED */
	TCPCONNECT_REFUSED = 3,     /* SYN_SENT -> CLOSE, ECONNREFUSED: a RST (or ICMP port unreachable) answered */
	TCPCONNECT_TIMEOUT = 4,     /* SYN_SENT -> CLOSE, ETIMEDOUT: SYN retransmissions exhausted, none dropped here */
	TCPCONNECT_DROPPED = 5,     /* SYN_SENT -> CLOSE, not refused, after this node dropped a SYN of it */
	TCPCONNECT_UNREACHABLE = 6, /* SYN_SENT -> CLOSE with another error (ICMP: EHOSTUNREACH, ENETUNREACH...) */
	TCPCONNECT_ABORTED = 7,     /* SYN_SENT -> CLOSE without error: the application closed it first */
	TCPCONNECT_RESET = 8,       /* an established (or closing) connection -> CLOSE on a RST received */
};

/* Key of the "hists" map (value: struct latency_hist): connect latency per namespace. */
struct tcpconnect_key {
	__u32 netns;
	__u32 netns_cookie; /* low 32 bits of the namespace's never-reused id (netns.bpf.h) */
};

/* Value of the "remotes" map: the outcomes and the connect latency towards one peer. */
struct tcpconnect_remote {
	__u64 outcomes[TCPCONNECT_OUTCOMES]; /* indexed by enum tcpconnect_outcome */
	struct latency_hist duration;        /* SYN sent to ESTABLISHED */
};

/* tcpconnect_event.drop_reason when no SYN of the socket was dropped on this node. */
enum tcpconnect_drop {
	TCPCONNECT_NO_DROP = 0xffffffffU,
};

/*
 * A ring-buffer record: one failure. hdr.type is the outcome, hdr.aux the TCP state the socket
 * left. Source = the local end, destination = the peer.
 */
struct tcpconnect_event {
	struct event_header hdr;
	struct flow_tuple tuple;
	__u64 duration_ns;  /* since the SYN was sent (connect failures); 0 for RESET */
	__u32 error;        /* sk->sk_err (an errno) when the socket closed; 0: none */
	__u32 drop_reason;  /* enum skb_drop_reason of the last SYN dropped here; TCPCONNECT_NO_DROP */
	__u32 drops;        /* SYNs of the socket dropped on this node */
	__u32 syns;         /* segments it retransmitted (tp->total_retrans): SYNs, for a connect */
};

#endif /* __TCPCONNECT_H */
