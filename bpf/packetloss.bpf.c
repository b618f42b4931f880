// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * packetloss: packets the kernel dropped, with the kernel's own reason (see packetloss.h).
 *
 * One hook, "drop", whose candidates are the programs at the end of this file (bpf/README.md). The
 * function fallbacks see a free before the last reference is dropped and have no location.
 *
 * Frees that are not drops are left out here, in the kernel: SKB_CONSUMED (since Linux 6.2,
 * commit 0e84afe8ebfb "net: dropreason: add SKB_CONSUMED reason", the kernel routes it to the
 * skb:consume_skb tracepoint, but the function fallbacks see it) and SKB_NOT_DROPPED_YET. Their
 * values come from the running kernel's BTF, set by user space in targ_reason_consumed and
 * targ_reason_not_dropped (~0: the kernel has no such reason).
 *
 * Each drop adds 1 to counters[(netns, reason, family, protocol)] and, with targ_emit, is sent as
 * a struct packetloss_event through the rate-limited ring buffer (events.bpf.h). An IP drop also
 * adds 1 to tuples[its addresses and protocol, ports 0, as upstream keys drops] and, with reason
 * targ_reason_netfilter, to tuples_netfilter: the compat endpoint's tuple labels (tuples.bpf.h).
 */
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

/* Settings (set between open and load). */
const volatile __u32 targ_reason_consumed = ~0U;    /* SKB_CONSUMED in this kernel */
const volatile __u32 targ_reason_not_dropped = ~0U; /* SKB_NOT_DROPPED_YET in this kernel */
const volatile __u32 targ_reason_netfilter = ~0U;   /* NETFILTER_DROP in this kernel */
const volatile bool targ_emit = false;              /* send events (event.probes has packetloss) */
const volatile bool targ_stack = false;             /* put the kernel stack in events */

DECLARE_COUNTERS(struct packetloss_key, PACKETLOSS_MAX_COUNTERS);
DECLARE_TUPLES(tuples, PACKETLOSS_MAX_TUPLES);
DECLARE_TUPLES(tuples_netfilter, PACKETLOSS_MAX_TUPLES);

BTF_EXPORT(struct packetloss_event, packetloss_event);
BTF_EXPORT(enum packetloss_event_type, packetloss_event_type);
BTF_EXPORT(struct flow_tuple, flow_tuple);

static __always_inline int handle_drop(void *ctx, const struct sk_buff *skb, __u64 location,
				       __u32 reason, const struct sock *rx_sk)
{
	struct packetloss_key key = {};
	struct packetloss_event *e;
	struct flow_tuple tuple = {};
	struct net_device *dev;
	struct netns_id id;
	long depth;

	if (reason == targ_reason_consumed || reason == targ_reason_not_dropped)
		return 0;

	id = skb_netns_id(false, skb);
	if (!id.inum)
		id = sk_netns_id(false, rx_sk);
	tuple_from_skb(&tuple, skb);

	key.netns = id.inum;
	key.netns_cookie = id.cookie;
	key.reason = reason;
	key.family = tuple.family;
	key.protocol = tuple.protocol;
	counters_add(&key);

	if (tuple.family) {
		struct flow_tuple ends = tuple;

		ends.sport = ends.dport = 0;
		tuples_add(&tuples, &tuples_inserted, &ends);
		if (reason == targ_reason_netfilter)
			tuples_add(&tuples_netfilter, &tuples_netfilter_inserted, &ends);
	}

	if (!targ_emit)
		return 0;
	e = event_reserve(struct packetloss_event, id.inum, PACKETLOSS_EVENT_DROP, 0);
	if (!e)
		return 0;
	e->tuple = tuple;
	e->location = location;
	e->reason = reason;
	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		bpf_core_read_str(e->ifname, sizeof(e->ifname), &dev->name);
	if (targ_stack) {
		depth = bpf_get_stack(ctx, e->stack, sizeof(e->stack), 0);
		if (depth > 0)
			e->stack_depth = depth / sizeof(__u64);
	}
	event_submit(e);
	return 0;
}

/* hook "drop": thin wrappers over handle_drop. tp_btf/kfree_skb has (skb, location, reason, rx_sk)
 * since Linux 6.10; the classic record exists on any kernel. sk_skb_reason_drop (sk, skb, reason)
 * is 6.10+, kfree_skb_reason (skb, reason) 5.17 to 6.9. */

SEC("tp_btf/kfree_skb")
int BPF_PROG(packetloss_drop_btf, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason, struct sock *rx_sk)
{
	return handle_drop(ctx, skb, (__u64)location, reason, rx_sk);
}

SEC("tracepoint/skb/kfree_skb")
int packetloss_drop_tp(struct trace_event_raw_kfree_skb *ctx)
{
	__u32 reason = 0;
	const struct sock *rx_sk = NULL;

	/* reason: Linux 5.17, commit c504e5c2f964 ("net: skb: introduce kfree_skb_reason()");
	 * rx_sk: Linux 6.10, commit c53795d48ee8 ("net: add rx_sk to trace_kfree_skb"). */
	if (bpf_core_field_exists(ctx->reason))
		reason = ctx->reason;
	if (bpf_core_field_exists(ctx->rx_sk))
		rx_sk = ctx->rx_sk;
	return handle_drop(ctx, ctx->skbaddr, (__u64)ctx->location, reason, rx_sk);
}

SEC("fentry/sk_skb_reason_drop")
int BPF_PROG(packetloss_drop_reason_drop_fentry, struct sock *sk, struct sk_buff *skb,
	     enum skb_drop_reason reason)
{
	return handle_drop(ctx, skb, 0, reason, sk);
}

SEC("kprobe/sk_skb_reason_drop")
int BPF_KPROBE(packetloss_drop_reason_drop_kprobe, struct sock *sk, struct sk_buff *skb,
	       enum skb_drop_reason reason)
{
	return handle_drop(ctx, skb, 0, reason, sk);
}

SEC("fentry/kfree_skb_reason")
int BPF_PROG(packetloss_drop_skb_reason_fentry, struct sk_buff *skb, enum skb_drop_reason reason)
{
	return handle_drop(ctx, skb, 0, reason, NULL);
}

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(packetloss_drop_skb_reason_kprobe, struct sk_buff *skb,
	       enum skb_drop_reason reason)
{
	return handle_drop(ctx, skb, 0, reason, NULL);
}

char LICENSE[] SEC("license") = "GPL";
