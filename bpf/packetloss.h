/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * packetloss: the kernel <-> user-space contract of packetloss.bpf.h (in the shared object
 * datapath.bpf.c): packets the kernel dropped (skb:kfree_skb), counted per (namespace, drop
 * reason, family, protocol) and, when events are on, sent one by one. Mirrored in
 * otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __PACKETLOSS_H
#define __PACKETLOSS_H

#include "events.h"
#include "tuple.h"

#define PACKETLOSS_MAX_COUNTERS 16384
#define PACKETLOSS_MAX_TUPLES 10240 /* tuples with counts, per map (upstream keeps 10240) */
#define PACKETLOSS_MAX_STACK 32 /* kernel stack frames kept in an event */

/* event_header.type */
enum packetloss_event_type {
	PACKETLOSS_EVENT_DROP = 1,
};

/* Key of the "counters" map (value: __u64 drops, shared by all CPUs). */
struct packetloss_key {
	__u32 netns;        /* namespace inode; 0 when neither the device nor a socket says */
	__u32 netns_cookie; /* low 32 bits of the namespace's never-reused id (netns.bpf.h) */
	__u32 reason;       /* the running kernel's enum skb_drop_reason value */
	__u16 family;   /* AF_INET, AF_INET6, or 0 for a packet that is not IP */
	__u16 protocol; /* IP protocol (IPPROTO_*), 0 when not IP */
};

/* A ring-buffer record: one drop. hdr.aux is unused (0). */
struct packetloss_event {
	struct event_header hdr;
	struct flow_tuple tuple;              /* the dropped packet's own addresses */
	__u64 location;                       /* kernel address that freed it; 0 when unknown */
	__u32 reason;                         /* enum skb_drop_reason */
	__u32 stack_depth;                    /* frames in stack[]; 0 unless targ_stack */
	char ifname[16];                      /* skb->dev->name; empty without a device */
	__u64 stack[PACKETLOSS_MAX_STACK];    /* kernel stack, innermost first */
};

#endif /* __PACKETLOSS_H */
