// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * packetloss: packets the kernel dropped, with the kernel's own reason (see packetloss.h). Part of
 * the shared object (datapath.bpf.c), whose hook "free" (skb:kfree_skb) calls packetloss_drop();
 * its function fallbacks see a free before the last reference is dropped and have no location.
 *
 * Frees that are not drops are left out here, in the kernel: SKB_CONSUMED (since Linux 6.2,
 * commit 0e84afe8ebfb "net: dropreason: add SKB_CONSUMED reason", the kernel routes it to the
 * skb:consume_skb tracepoint, but the function fallbacks see it) and SKB_NOT_DROPPED_YET. Their
 * values come from the running kernel's BTF, set by user space in packetloss_targ_reason_consumed
 * and packetloss_targ_reason_not_dropped (~0: the kernel has no such reason).
 *
 * Each drop adds 1 to counters[(netns, reason, family, protocol)] and, with targ_emit, is sent as
 * a struct packetloss_event through the rate-limited ring buffer (events.bpf.h). An IP drop also
 * adds 1 to tuples[its addresses and protocol, ports 0, as upstream keys drops] and, with reason
 * targ_reason_netfilter, to tuples_netfilter: the compat endpoint's tuple labels (tuples.bpf.h).
 */
#ifndef __PACKETLOSS_BPF_H
#define __PACKETLOSS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "events.bpf.h"
#include "tuples.bpf.h"
#include "packetloss.h"

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING __u32 packetloss_targ_reason_consumed = ~0U;    /* SKB_CONSUMED in this kernel */
SETTING __u32 packetloss_targ_reason_not_dropped = ~0U; /* SKB_NOT_DROPPED_YET in this kernel */
SETTING __u32 packetloss_targ_reason_netfilter = ~0U;   /* NETFILTER_DROP in this kernel */
SETTING bool packetloss_targ_emit = false;              /* send events (event.probes has it) */
SETTING bool packetloss_targ_stack = false;             /* put the kernel stack in events */

DECLARE_EVENTS();
DECLARE_COUNTERS(struct packetloss_key, PACKETLOSS_MAX_COUNTERS);
DECLARE_TUPLES(packetloss_tuples, PACKETLOSS_MAX_TUPLES);
DECLARE_TUPLES(packetloss_tuples_netfilter, PACKETLOSS_MAX_TUPLES);

BTF_EXPORT(struct packetloss_event, packetloss_event);
BTF_EXPORT(enum packetloss_event_type, packetloss_event_type);
BTF_EXPORT(struct flow_tuple, flow_tuple);

static __always_inline void packetloss_drop(void *ctx, const struct sk_buff *skb, __u64 location,
					   __u32 reason, const struct sock *rx_sk)
{
	struct packetloss_key key = {};
	struct packetloss_event *e;
	struct flow_tuple tuple = {};
	struct net_device *dev;
	struct netns_id id;
	long depth;

	if (reason == packetloss_targ_reason_consumed || reason == packetloss_targ_reason_not_dropped)
		return;

	id = skb_netns_id(false, skb);
	if (!id.inum)
		id = sk_netns_id(false, rx_sk);
	tuple_from_skb(&tuple, skb);

	key.netns = id.inum;
	key.netns_cookie = id.cookie;
	key.reason = reason;
	key.family = tuple.family;
	key.protocol = tuple.protocol;
	packetloss_counters_add(&key);

	if (tuple.family) {
		struct flow_tuple ends = tuple;

		ends.sport = ends.dport = 0;
		tuples_add(&packetloss_tuples, &packetloss_tuples_inserted, &ends);
		if (reason == packetloss_targ_reason_netfilter)
			tuples_add(&packetloss_tuples_netfilter, &packetloss_tuples_netfilter_inserted,
				   &ends);
	}

	if (!packetloss_targ_emit)
		return;
	e = event_reserve(struct packetloss_event, id.inum, PACKETLOSS_EVENT_DROP, 0);
	if (!e)
		return;
	e->tuple = tuple;
	e->location = location;
	e->reason = reason;
	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		bpf_core_read_str(e->ifname, sizeof(e->ifname), &dev->name);
	if (packetloss_targ_stack) {
		depth = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);
		if (depth > 0)
			e->stack_depth = depth / sizeof(__u64);
	}
	event_submit(e);
}

#endif /* __PACKETLOSS_BPF_H */
