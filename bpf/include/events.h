/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel <-> user-space contract shared by every probe's ring buffer: types and constants only.
 * Mirrored in otel_kubeskoop/bpf/generated/common.py, generated from the objects' BTF (make).
 * Include vmlinux.h (BPF) first for __u64 & co.
 */
#ifndef __OTEL_KUBESKOOP_EVENTS_H
#define __OTEL_KUBESKOOP_EVENTS_H

/* The first member of every ring-buffer record. */
struct event_header {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC, nanoseconds */
	__u32 netns; /* inode of the network namespace (net->ns.inum); 0 when unknown */
	__u16 type;  /* the probe's event type (an enum in <probe>.h) */
	__u16 aux;   /* probe-specific (say, a TCP state); 0 when unused */
};

/* Index into the per-CPU "losses" array: why an event the kernel saw never reached user space. */
enum event_loss_reason {
	EVENT_LOSS_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve() failed: user space is behind */
	EVENT_LOSS_RATE_LIMITED = 1, /* the (netns, type) token bucket was empty */
	EVENT_LOSS__MAX = 2,
};

#endif /* __OTEL_KUBESKOOP_EVENTS_H */
