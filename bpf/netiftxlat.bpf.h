// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * netiftxlat: transmit latency of each packet, in two stages, per (namespace, interface); see
 * netiftxlat.h.
 *
 *   QDISC  net:net_dev_queue -> net:net_dev_start_xmit: from __dev_queue_xmit() handing the packet
 *          to the device's qdisc to the qdisc releasing it to the driver (near 0 on a device
 *          without a queue, such as veth by default);
 *   XMIT   net:net_dev_start_xmit -> net:net_dev_xmit: the driver's ndo_start_xmit(), until it
 *          accepted the packet into its TX ring (not until the wire).
 *
 * Part of the shared object (datapath.bpf.c), whose hooks call netiftxlat_<hook>(): queue, start,
 * xmit, free and consume. __dev_queue_xmit's entry is slightly before net_dev_queue (before the tc
 * egress hook); start has no function candidate (the call site is the inlined
 * netdev_start_xmit()).
 *
 * In flight: net_dev_queue puts (skb, ifindex) -> start record into the in-flight table "skbs",
 * or, on a device without a queue, into a per-CPU slot (netiftxlat_hold()); net_dev_start_xmit
 * takes it from there, measures QDISC and keeps it in a per-CPU ring until net_dev_xmit measures
 * XMIT. Keyed by the device too, since a stacked device (vxlan, ipip, vlan, macvlan, bond) queues
 * the same skb on the lower device from inside its own ndo_start_xmit. A packet that never
 * reaches the driver (dropped by the qdisc, segmented by software GSO, purged with the queue) is
 * freed through kfree_skb or consume_skb: those hooks remove its record (counted as discarded),
 * under the key of the device the skb is on when freed. Anything else (a freed packet on another
 * device key, pointer reuse races) stays until a start needs its slot, which counts it as evicted.
 * An skb that the driver refuses with NETDEV_TX_BUSY is requeued and started again: its record
 * goes back to the table, so its qdisc wait is counted once, up to the first start, and its
 * driver time from the last start.
 */
#ifndef __NETIFTXLAT_BPF_H
#define __NETIFTXLAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "hookrun.bpf.h"
#include "netiftxlat.h"

#define NETDEV_TX_BUSY 0x10
#define XMIT_RING 8 /* XMIT_RECURSION_LIMIT: nested ndo_start_xmit() calls on one CPU */

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING bool netiftxlat_targ_emit = false;                        /* send events */
SETTING __u64 netiftxlat_targ_threshold_ns = NETIFTXLAT_SLOW_NS;  /* events above this */
SETTING __u64 netiftxlat_targ_since_ns = 0; /* the probe started: older starts are stale */

DECLARE_EVENTS();
DECLARE_LATENCY_HISTS(struct netiftxlat_key, struct netiftxlat_value, NETIFTXLAT_MAX_HISTS);

struct netiftxlat_skb_key {
	__u64 skb;
	__u32 ifindex;
	__u32 pad;
};

struct netiftxlat_skb {
	__u64 queued_ns;  /* net_dev_queue */
	__u64 started_ns; /* net_dev_start_xmit; 0 before */
	__u64 qdisc_ns;   /* the measured qdisc wait */
	struct netns_id netns;
	__u32 len;
	__u32 pad;
};

DECLARE_INFLIGHT(netiftxlat_skbs, struct netiftxlat_skb_key, struct netiftxlat_skb,
		 NETIFTXLAT_MAX_INFLIGHT);

/*
 * A device without a queue (noqueue, veth's and most pods' interfaces) hands the packet to its
 * driver inside the same __dev_queue_xmit() call, with bottom halves off: net_dev_start_xmit
 * follows net_dev_queue on the same CPU before any other packet is queued there (a stacked
 * device queues to its lower one only from its own ndo_start_xmit, after its start). Its start
 * record waits in one per-CPU slot, which stays in the cache, instead of the shared table, whose
 * slot for the packet is a cache miss on every packet (bench/bpf_hotspots.py, README). It is
 * counted like a table record (started, ended, discarded, evicted).
 */
struct netiftxlat_held {
	struct netiftxlat_skb_key key; /* key.skb 0: empty */
	struct netiftxlat_skb value;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netiftxlat_held);
} netiftxlat_held SEC(".maps");

/*
 * Packets in their driver: net_dev_start_xmit and net_dev_xmit of one packet run on one CPU
 * (xmit_one(), bottom halves off), innermost last, so the started packet's record moves from its
 * slot or table entry to a per-CPU ring of the last starts, where net_dev_xmit finds it; the
 * classic net:net_dev_xmit record names the device but gives no pointer to it, and the skb may
 * already be freed when it fires, so the device is kept there too. Stale entries are overwritten
 * in turn.
 */
struct netiftxlat_started {
	__u64 skb;
	__u64 dev;
	__u32 ifindex;
	__u32 pad;
	struct netiftxlat_skb s;
};

struct netiftxlat_xmit_ring {
	struct netiftxlat_started e[XMIT_RING];
	__u32 head;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netiftxlat_xmit_ring);
} netiftxlat_xmit_rings SEC(".maps");

BTF_EXPORT(struct netiftxlat_event, netiftxlat_event);
BTF_EXPORT(enum netiftxlat_stage, netiftxlat_stage);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

/*
 * A device with one TX queue in use (veth's default, though it has a queue per possible CPU)
 * whose qdisc has no enqueue (noqueue: __dev_queue_xmit() takes its driver path at once). The
 * loads are of what __dev_queue_xmit() has just read itself (netdev_core_pick_tx(), txq->qdisc,
 * q->enqueue). A device that spreads packets over several queues uses the table.
 */
static __always_inline bool netiftxlat_no_queue(bool btf, const struct net_device *dev)
{
	const struct Qdisc *q;

	if (KREAD(btf, dev, real_num_tx_queues) != 1)
		return false;
	q = KREAD(btf, dev, _tx, qdisc);
	return q && !KREAD(btf, q, enqueue);
}

static __always_inline struct netiftxlat_held *netiftxlat_held_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&netiftxlat_held, &zero);
}

static __always_inline bool netiftxlat_held_is(const struct netiftxlat_held *h,
					       const struct netiftxlat_skb_key *key)
{
	return h->key.skb == key->skb && h->key.ifindex == key->ifindex;
}

/* Hold a start on this CPU; one still held was never started nor freed (counted evicted). */
static __always_inline void netiftxlat_hold(const struct netiftxlat_skb_key *key,
					    const struct netiftxlat_skb *s)
{
	struct netiftxlat_held *h = netiftxlat_held_slot();

	if (!h)
		return;
	if (netiftxlat_held_is(h, key)) {
		netiftxlat_inflight_count(INFLIGHT_REPLACED);
	} else {
		if (h->key.skb)
			netiftxlat_inflight_count(INFLIGHT_EVICTED);
		netiftxlat_inflight_count(INFLIGHT_STARTED);
	}
	h->key = *key;
	h->value = *s;
}

/* Take key's start record, held on this CPU or in the table, into out; false if none. */
static __always_inline bool netiftxlat_take(const struct netiftxlat_skb_key *key,
					    struct netiftxlat_skb *out)
{
	struct netiftxlat_held *h = netiftxlat_held_slot();

	if (h && netiftxlat_held_is(h, key)) {
		*out = h->value;
		h->key.skb = 0;
		netiftxlat_inflight_count(INFLIGHT_ENDED);
		return true;
	}
	if (!netiftxlat_skbs_get(key, out))
		return false;
	netiftxlat_skbs_end(key);
	return true;
}

static __always_inline void netiftxlat_ring_push(const struct sk_buff *skb, const struct net_device *dev,
						 __u32 ifindex, const struct netiftxlat_skb *s)
{
	__u32 zero = 0, slot;
	struct netiftxlat_xmit_ring *r = bpf_map_lookup_elem(&netiftxlat_xmit_rings, &zero);

	if (!r)
		return;
	slot = r->head & (XMIT_RING - 1);
	r->e[slot].skb = (__u64)skb;
	r->e[slot].dev = (__u64)dev;
	r->e[slot].ifindex = ifindex;
	r->e[slot].s = *s;
	r->head = slot + 1;
}

/* The newest start of skb on this CPU, taken out of the ring into out; false if none. */
static __always_inline bool netiftxlat_ring_pop(const void *skb, struct netiftxlat_started *out)
{
	__u32 zero = 0, slot;
	struct netiftxlat_xmit_ring *r = bpf_map_lookup_elem(&netiftxlat_xmit_rings, &zero);
	int i;

	if (!r)
		return false;
	for (i = 1; i <= XMIT_RING; i++) {
		slot = (r->head - i) & (XMIT_RING - 1);
		if (r->e[slot].skb == (__u64)skb) {
			*out = r->e[slot];
			r->e[slot].skb = 0;
			return true;
		}
	}
	return false;
}

static __always_inline void netiftxlat_record(__u32 stage, struct netns_id netns,
				   const struct net_device *dev, __u32 ifindex, __u64 delta)
{
	struct netiftxlat_key key = {
		.netns = netns.inum, .netns_cookie = netns.cookie, .ifindex = ifindex, .stage = stage,
	};
	struct netiftxlat_value *v = netiftxlat_hists_lookup(&key);

	if (!v)
		return;
	if (!v->ifname[0])
		BPF_CORE_READ_STR_INTO(&v->ifname, dev, name);
	latency_add(&v->hist, delta, NETIFTXLAT_SLOW_NS, 0);
}

static __always_inline void netiftxlat_emit(__u32 stage, const struct sk_buff *skb,
				 const struct net_device *dev, __u32 ifindex,
				 const struct netiftxlat_skb *s, __u64 xmit_ns, int rc)
{
	struct netiftxlat_event *e;

	e = event_reserve(struct netiftxlat_event, s->netns.inum, stage, 0);
	if (!e)
		return;
	e->qdisc_ns = s->qdisc_ns;
	e->xmit_ns = xmit_ns;
	e->latency_ns = stage == NETIFTXLAT_QDISC ? s->qdisc_ns : xmit_ns;
	if (skb)
		tuple_from_skb(&e->tuple, skb);
	e->ifindex = ifindex;
	e->len = s->len;
	e->rc = rc;
	e->cpu = bpf_get_smp_processor_id();
	BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	event_submit(e);
}

static __always_inline void netiftxlat_queue(bool btf, const struct sk_buff *skb,
					     struct hook_run *run)
{
	const struct net_device *dev;
	struct netiftxlat_skb_key key = {};
	struct netiftxlat_skb s = {};

	if (!skb)
		return;
	dev = KREAD(btf, skb, dev);
	if (!dev)
		return;
	key.skb = (__u64)skb;
	key.ifindex = KREAD(btf, dev, ifindex);
	s.queued_ns = hook_now(run);
	s.netns = net_id(btf, KREAD(btf, dev, nd_net.net));
	s.len = KREAD(btf, skb, len);
	if (netiftxlat_no_queue(btf, dev))
		netiftxlat_hold(&key, &s);
	else
		netiftxlat_skbs_start(&key, &s);
}

static __always_inline void netiftxlat_start(bool btf, const struct sk_buff *skb,
					     const struct net_device *dev, struct hook_run *run)
{
	struct netiftxlat_skb_key key = {};
	struct netiftxlat_skb s;
	__u64 now;

	if (!skb || !dev)
		return;
	key.skb = (__u64)skb;
	key.ifindex = KREAD(btf, dev, ifindex);
	if (!netiftxlat_take(&key, &s) || s.queued_ns < netiftxlat_targ_since_ns) {
		netiftxlat_inflight_count(INFLIGHT_UNMATCHED);
		return;
	}
	now = hook_now(run);
	if (!s.started_ns) { /* not again after NETDEV_TX_BUSY, whose qdisc wait was counted */
		s.qdisc_ns = now > s.queued_ns ? now - s.queued_ns : 0;
		netiftxlat_record(NETIFTXLAT_QDISC, s.netns, dev, key.ifindex, s.qdisc_ns);
		if (netiftxlat_targ_emit && s.qdisc_ns > netiftxlat_targ_threshold_ns)
			netiftxlat_emit(NETIFTXLAT_QDISC, skb, dev, key.ifindex, &s, 0, 0);
	}
	s.started_ns = now;
	netiftxlat_ring_push(skb, dev, key.ifindex, &s);
}

/* dev may be NULL (classic tracepoint): then it is the one kept at start (btf false). */
static __always_inline void netiftxlat_xmit(bool btf, const void *skb, int rc,
					    const struct net_device *dev, struct hook_run *run)
{
	struct netiftxlat_skb_key key = {};
	struct netiftxlat_started st;
	__u64 now, delta;

	if (!skb)
		return;
	if (!netiftxlat_ring_pop(skb, &st) || st.s.started_ns < netiftxlat_targ_since_ns) {
		netiftxlat_inflight_count(INFLIGHT_UNMATCHED);
		return;
	}
	if (!dev)
		dev = (const struct net_device *)st.dev;
	if (rc == NETDEV_TX_BUSY) {
		/* Requeued to its qdisc, it starts again: back to the table, marked started. A device
		 * without a queue drops it instead (__dev_queue_xmit()). */
		key.skb = (__u64)skb;
		key.ifindex = st.ifindex;
		if (!netiftxlat_no_queue(false, dev))
			netiftxlat_skbs_start(&key, &st.s);
		return;
	}
	now = hook_now(run);
	delta = now > st.s.started_ns ? now - st.s.started_ns : 0;
	netiftxlat_record(NETIFTXLAT_XMIT, st.s.netns, dev, st.ifindex, delta);
	if (netiftxlat_targ_emit && delta > netiftxlat_targ_threshold_ns)
		netiftxlat_emit(NETIFTXLAT_XMIT, NULL, dev, st.ifindex, &st.s, delta, rc);
}

/*
 * A packet freed before the driver saw it: forget it. Only a device with a queue keeps records
 * in the table, so a packet freed on one without (every received packet on a veth, say) costs
 * no table lookup.
 */
static __always_inline void netiftxlat_free(bool btf, const struct sk_buff *skb)
{
	struct netiftxlat_skb_key key = {};
	struct netiftxlat_held *h;
	const struct net_device *dev;

	if (!skb)
		return;
	dev = KREAD(btf, skb, dev);
	if (!dev)
		return;
	key.skb = (__u64)skb;
	key.ifindex = KREAD(btf, dev, ifindex);
	h = netiftxlat_held_slot();
	if (h && netiftxlat_held_is(h, &key)) {
		h->key.skb = 0;
		netiftxlat_inflight_count(INFLIGHT_DISCARDED);
		return;
	}
	if (!netiftxlat_no_queue(btf, dev))
		netiftxlat_skbs_discard(&key);
}

#endif /* __NETIFTXLAT_BPF_H */
