/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * tcprtt: the kernel <-> user-space contract of tcprtt.bpf.h: a TCP connection's smoothed RTT,
 * RTT variation and retransmission timeout, sampled while it receives, as log2 histograms
 * (latency.h, nanoseconds) per (namespace, quantity); and the smoothed RTT alone per (namespace,
 * peer address) in "remotes" (remote.h), which user space empties every collection. Mirrored in
 * otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __TCPRTT_H
#define __TCPRTT_H

#include "latency.h"
#include "remote.h"

#define TCPRTT_MAX_HISTS 8192  /* (namespace, quantity) keys */
#define TCPRTT_MAX_SOCKS 16384 /* last-sample slots, direct-mapped by socket address */
#define TCPRTT_MAX_REMOTES 4096 /* (namespace, peer) histograms between two collections */

/* tcprtt_key.quantity: what a histogram holds, as tcp_info reports it (tcp_get_info()). */
enum tcprtt_quantity {
	TCPRTT_SRTT = 1,   /* tp->srtt_us >> 3: the smoothed RTT (tcpi_rtt) */
	TCPRTT_RTTVAR = 2, /* tp->mdev_us >> 2: its mean deviation (tcpi_rttvar) */
	TCPRTT_RTO = 3,    /* icsk->icsk_rto: the retransmission timeout, with backoff (tcpi_rto) */
};

/* Key of the "hists" map (value: struct latency_hist). */
struct tcprtt_key {
	__u32 netns;        /* the socket's namespace */
	__u32 netns_cookie; /* and its never-reused id (netns.bpf.h net_id()) */
	__u32 quantity;     /* enum tcprtt_quantity */
};

#endif /* __TCPRTT_H */
