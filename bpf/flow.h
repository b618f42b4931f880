/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * flow: the kernel <-> user-space contract of flow.bpf.c: bytes and packets per
 * (namespace, direction, IP flow) seen by TC programs on pod interfaces. Types and constants
 * only; mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __FLOW_H
#define __FLOW_H

#define FLOW_MAX_ENTRIES 65536 /* default size of the "flows" LRU hash (user space may change it) */

/* flow_key.direction: where the TC program saw the packet, from the interface's point of view. */
enum flow_direction {
	FLOW_INGRESS = 1, /* received by the interface (tc ingress) */
	FLOW_EGRESS = 2,  /* sent by the interface (tc egress) */
};

/* Index into the per-CPU "flow_stats" array. */
enum flow_stat {
	FLOW_STAT_INSERTED = 0, /* a new key entered "flows" (user space: evicted = inserted - deleted - live) */
	FLOW_STAT_FAILED = 1,   /* a new key could not be inserted (no memory) */
	FLOW_STAT_NOT_IP = 2,   /* packets that were not IPv4 or IPv6 (ARP...), not counted in "flows" */
	FLOW_STAT__MAX = 3,
};

/* Key of the "flows" map. Ports are 0 unless targ_ports (enablePortInLabel) and the protocol has them. */
struct flow_key {
	__u32 netns;        /* namespace inode of the interface */
	__u32 netns_cookie; /* and the namespace's never-reused id (netns.bpf.h net_id()) */
	__u8 direction;  /* enum flow_direction */
	__u8 protocol;   /* IP protocol (IPv6: after the extension headers) */
	__u16 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u8 saddr[16];  /* network byte order; IPv4 in the first 4 bytes, the rest 0 */
	__u8 daddr[16];
	__u16 sport;     /* host byte order */
	__u16 dport;
};

/* Value of the "flows" map, shared by all CPUs (atomic adds). */
struct flow_value {
	__u64 bytes;   /* skb->len at the TC hook: the frame with its link-layer header, no FCS */
	__u64 packets; /* a GSO packet counts as its segments (gso_segs) */
};

#endif /* __FLOW_H */
