// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * kernellatency: time TCP packets spend in the kernel's network stack, per (namespace,
 * direction); see kernellatency.h. Upstream measures ip_rcv -> ip_local_deliver_finish and
 * __ip_queue_xmit -> ip_finish_output2 with kprobes, which 6.x kernels inline or lack (#293);
 * this measures the nearest intervals that tracepoints bound:
 *
 *   RX  from net:netif_receive_skb (the device hands the packet to the stack; the last one when
 *       a packet is received again, by a bridge say) to tcp:tcp_probe (tcp_rcv_established():
 *       the packet reaches its established TCP socket, after IP, netfilter, routing, the TCP
 *       demux and, when the socket was busy, the socket backlog). TCP segments only: a UDP
 *       datagram's arrival at its socket has no tracepoint.
 *   TX  from TCP handing the segment to IP (__tcp_transmit_skb() stamps skb->tstamp with the
 *       segment's departure time, CLOCK_MONOTONIC, from the clock TCP refreshes when it starts
 *       sending: tcp_write_xmit(), a timer, an incoming ACK) to net:net_dev_queue (IP output,
 *       netfilter, routing and the neighbour layer are done; the device's qdisc is next). Data
 *       segments only (pure ACKs may carry an older stamp), and none paced into the future (fq
 *       pacing stamps departure times ahead of now). No per-packet state: the kernel carries the
 *       start time in the packet.
 *
 * Part of the shared object (datapath.bpf.c), whose hooks call kernellatency_<hook>(): rx, deliver,
 * queue (TX), free and consume. Its rx function candidates are upstream's start, ip_rcv (IPv4
 * only); the classic tcp_probe record has skbaddr/skaddr since Linux 6.10, and older ones fail the
 * CO-RE relocation, so the loader falls back.
 *
 * In flight (RX only): netif_receive_skb puts skb -> start into the in-flight table "skbs"
 * (latency.bpf.h); tcp_probe measures and removes it. A received TCP packet that never reaches an established socket
 * (dropped, forwarded, a SYN to a listener) is freed through skb:kfree_skb or skb:consume_skb,
 * which remove its entry (counted as discarded). One freed without a tracepoint (__kfree_skb(),
 * deferred frees) stays until its memory comes back as a new packet, which replaces it (counted
 * as replaced), or a start that needs its slot evicts it (counted).
 */
#ifndef __KERNELLATENCY_BPF_H
#define __KERNELLATENCY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "tcpseg.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "hookrun.bpf.h"
#include "kernellatency.h"

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING bool kernellatency_targ_emit = false;                             /* send events */
SETTING __u64 kernellatency_targ_threshold_ns = KERNELLATENCY_SLOW0_NS;   /* events above this */
SETTING __u64 kernellatency_targ_since_ns = 0; /* the probe started: older starts are stale */

DECLARE_EVENTS();
DECLARE_LATENCY_HISTS(struct kernellatency_key, struct latency_hist, KERNELLATENCY_MAX_HISTS);

struct kernellatency_skb {
	__u64 ts_ns;
	__u64 dev; /* the receiving device (for the event's name) */
	__u32 ifindex;
	__u32 len;
};

DECLARE_INFLIGHT(kernellatency_skbs, __u64, struct kernellatency_skb, KERNELLATENCY_MAX_INFLIGHT);

/*
 * The last TX measurement on each CPU: a stacked device (vlan, macvlan, bond) queues the same
 * segment to its lower device from inside its own transmit, on the same CPU; it is measured once,
 * at the first device. The stamp tells a new packet that reuses the address from the same one.
 */
struct kernellatency_last_tx {
	__u64 skb;
	__u64 stamp;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kernellatency_last_tx);
} kernellatency_last_tx SEC(".maps");

BTF_EXPORT(struct kernellatency_event, kernellatency_event);
BTF_EXPORT(enum kernellatency_direction, kernellatency_direction);
BTF_EXPORT(struct kernellatency_key, kernellatency_key);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

static __always_inline void kernellatency_measure(__u32 direction, struct netns_id netns, __u64 delta,
				    const struct sk_buff *skb, const struct net_device *dev,
				    __u32 ifindex, __u32 len)
{
	struct kernellatency_key key = {
		.netns = netns.inum, .netns_cookie = netns.cookie, .direction = direction,
	};
	struct kernellatency_event *e;
	struct latency_hist *h;

	h = kernellatency_hists_lookup(&key);
	if (h)
		latency_add(h, delta, KERNELLATENCY_SLOW0_NS, KERNELLATENCY_SLOW1_NS);
	if (!kernellatency_targ_emit || delta <= kernellatency_targ_threshold_ns)
		return;
	e = event_reserve(struct kernellatency_event, netns.inum, direction, 0);
	if (!e)
		return;
	tuple_from_skb(&e->tuple, skb);
	e->latency_ns = delta;
	e->ifindex = ifindex;
	e->len = len;
	if (dev)
		BPF_CORE_READ_STR_INTO(&e->ifname, dev, name);
	event_submit(e);
}

/* Whether a packet entering the stack (skb->data at its IP header) is TCP over IPv4 or IPv6. */
static __always_inline bool kernellatency_rx_is_tcp(bool btf, const struct sk_buff *skb)
{
	unsigned char *data = KREAD(btf, skb, data);
	__u16 proto = bpf_ntohs(KREAD(btf, skb, protocol));
	__u8 l4 = 0;

	if (proto == TUPLE_ETH_P_IP)
		KREAD_BYTES(&l4, data + 9, 1); /* iphdr.protocol */
	else if (proto == TUPLE_ETH_P_IPV6)
		KREAD_BYTES(&l4, data + 6, 1); /* ipv6hdr.nexthdr */
	return l4 == IPPROTO_TCP;
}

/* hook "rx": the packet enters the stack. */
static __always_inline void kernellatency_rx(bool btf, const struct sk_buff *skb,
					     struct hook_run *run)
{
	struct kernellatency_skb s = {};
	struct net_device *dev;
	__u64 key = (__u64)skb;

	if (!skb || !kernellatency_rx_is_tcp(btf, skb))
		return;
	dev = KREAD(btf, skb, dev);
	s.ts_ns = hook_now(run);
	s.dev = (__u64)dev;
	s.ifindex = KREAD(btf, dev, ifindex);
	s.len = KREAD(btf, skb, len);
	kernellatency_skbs_start(&key, &s);
}

/* hook "deliver": the packet reaches its established TCP socket. */
static __always_inline void kernellatency_deliver(bool btf, const struct sock *sk,
						  const struct sk_buff *skb, struct hook_run *run)
{
	const struct net_device *dev;
	__u64 key = (__u64)skb, now;
	struct netns_id netns;
	struct kernellatency_skb s;

	if (!skb)
		return;
	if (!kernellatency_skbs_get(&key, &s) || s.ts_ns < kernellatency_targ_since_ns) {
		kernellatency_inflight_count(INFLIGHT_UNMATCHED);
		return;
	}
	kernellatency_skbs_end(&key);
	now = hook_now(run);
	dev = (const struct net_device *)s.dev;
	netns = sk_netns_id(btf, sk);
	if (!netns.inum) /* dev is a number from the map: probe reads */
		netns = net_id(false, BPF_CORE_READ(dev, nd_net.net));
	kernellatency_measure(KERNELLATENCY_RX, netns, now > s.ts_ns ? now - s.ts_ns : 0, skb, dev,
			      s.ifindex, s.len);
}

/* hooks "free" and "consume": a packet is freed; one still in flight never reached a socket. */
static __always_inline void kernellatency_free(const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;

	if (skb)
		kernellatency_skbs_discard(&key);
}

/* hook "queue" (TX): a packet is queued to a device; a TCP data segment carries TCP's departure stamp. */
static __always_inline void kernellatency_queue(bool btf, const struct sk_buff *skb,
						struct hook_run *run)
{
	const struct net_device *dev;
	const struct sock *sk;
	const struct tcpseg *seg;
	struct kernellatency_last_tx *last;
	__u64 stamp, now;
	__u32 zero = 0;
	__u8 state;

	if (!skb)
		return;
	sk = KREAD(btf, skb, sk);
	if (!sk)
		return;
	state = KREAD(btf, sk, __sk_common.skc_state);
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return; /* not a full socket (sk_fullsock()) */
	if (KREAD_BITFIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	stamp = KREAD(btf, skb, tstamp);
	if (!stamp)
		return;
	last = bpf_map_lookup_elem(&kernellatency_last_tx, &zero);
	if (!last || (last->skb == (__u64)skb && last->stamp == stamp))
		return;
	seg = hook_tcp_segment(btf, run, skb);
	if (!seg || !seg->payload)
		return;
	now = hook_now(run); /* after the filters: pure ACKs need no clock read */
	if (stamp > now)
		return;
	last->skb = (__u64)skb;
	last->stamp = stamp;
	dev = KREAD(btf, skb, dev);
	kernellatency_measure(KERNELLATENCY_TX, sk_netns_id(btf, sk), now - stamp, skb, dev,
			      KREAD(btf, dev, ifindex), KREAD(btf, skb, len));
}

#endif /* __KERNELLATENCY_BPF_H */
