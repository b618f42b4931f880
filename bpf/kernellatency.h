/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * kernellatency: the kernel <-> user-space contract of kernellatency.bpf.h (in the shared object
 * datapath.bpf.c): how long TCP packets spend in the kernel's receive and transmit paths, per
 * (namespace, direction), as a log2 histogram (latency.h) plus upstream's two fixed thresholds,
 * and, when events are on, each packet above the event threshold. Mirrored in
 * otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __KERNELLATENCY_H
#define __KERNELLATENCY_H

#include "events.h"
#include "tuple.h"
#include "latency.h"

#define KERNELLATENCY_MAX_HISTS 8192     /* (namespace, direction) keys */
#define KERNELLATENCY_MAX_INFLIGHT 16384 /* received packets between device and socket */
#define KERNELLATENCY_IFNAMSIZ 16
/* Upstream's counters: rxslow/txslow in latency_hist.slow[0], rxslow100ms/txslow100ms in slow[1]. */
#define KERNELLATENCY_SLOW0_NS (10ULL * 1000 * 1000)
#define KERNELLATENCY_SLOW1_NS (100ULL * 1000 * 1000)

/* kernellatency_key.direction, and event_header.type (upstream RXKERNEL_SLOW / TXKERNEL_SLOW). */
enum kernellatency_direction {
	KERNELLATENCY_RX = 1, /* net:netif_receive_skb -> the packet reaches its TCP socket */
	KERNELLATENCY_TX = 2, /* TCP hands the segment to IP -> net:net_dev_queue */
};

/* Key of the "hists" map (value: struct latency_hist). */
struct kernellatency_key {
	__u32 netns;        /* the socket's namespace */
	__u32 netns_cookie; /* and its never-reused id (netns.bpf.h net_id()) */
	__u32 direction;    /* enum kernellatency_direction */
};

/*
 * A ring-buffer record: one packet slower than the event threshold. hdr.type is the direction.
 * The tuple is the packet's own (RX: source = the sender); ifindex and ifname the device it was
 * received on (RX) or queued to (TX); len its length there.
 */
struct kernellatency_event {
	struct event_header hdr;
	struct flow_tuple tuple;
	__u64 latency_ns;
	__u32 ifindex;
	__u32 len;
	char ifname[KERNELLATENCY_IFNAMSIZ];
};

#endif /* __KERNELLATENCY_H */
