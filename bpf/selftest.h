/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * selftest: the kernel <-> user-space contract of selftest.bpf.c, the object that exercises the
 * BPF machinery end to end (loader, attach plans, rodata, maps, ring buffer, rate limit). It is
 * shipped so that `otel-kubeskoop doctor` can check a node; it is not a probe.
 * Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __SELFTEST_H
#define __SELFTEST_H

#include "events.h"

/* event_header.type, and selftest_key.type */
enum selftest_event_type {
	SELFTEST_EVENT_RESET = 1, /* a TCP socket received a RST (tcp_receive_reset) */
	SELFTEST_EVENT_DROP = 2,  /* the kernel dropped a packet (kfree_skb) */
};

/* Key of the per-CPU "counts" map: events seen, whether or not they were emitted. */
struct selftest_key {
	__u32 netns;
	__u32 type; /* enum selftest_event_type */
};

/* A ring-buffer record. hdr.aux: the socket's TCP state for RESET, 0 for DROP. */
struct selftest_event {
	struct event_header hdr;
	__u32 pid;         /* tgid of the current task */
	__u32 drop_reason; /* DROP: the running kernel's enum skb_drop_reason value */
	__u16 family;      /* RESET: AF_INET or AF_INET6 */
	__u16 sport;       /* RESET: local port, host byte order */
	__u16 dport;       /* RESET: remote port, host byte order */
	__u16 protocol;    /* DROP: skb->protocol (ETH_P_*), host byte order */
	__u8 saddr[16];    /* RESET: local address; IPv4 in the first 4 bytes */
	__u8 daddr[16];    /* RESET: remote address */
	char comm[16];     /* current task */
};

#endif /* __SELFTEST_H */
