// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * tcprtt: a TCP connection's smoothed RTT through its life, not only at close (see tcprtt.h).
 *
 * Part of the shared object (datapath.bpf.c), whose hook "deliver" (tcp:tcp_probe, fired by
 * tcp_rcv_established() for every segment an established socket receives, ACKs included, so
 * senders and receivers alike) calls tcprtt_deliver(). At most once per socket per
 * tcprtt_targ_interval_ns the handler reads the socket's RTT state, as tcp_info reports it:
 * srtt_us >> 3, mdev_us >> 2 and icsk_rto (jiffies, converted with the kernel's CONFIG_HZ), and
 * adds each, in nanoseconds, to hists[(netns, quantity)]. Sockets without an RTT sample yet
 * (srtt_us 0) are skipped. With tcprtt_targ_remotes, the smoothed RTT also goes to
 * remotes[(netns, peer address)] (remote.bpf.h): one hash lookup per sample, not per packet.
 *
 * The interval is kept in "socks", a direct-mapped ARRAY of (socket, last sample time) slots,
 * picked by hashing the socket's address: a lookup is inline loads, no helper call, as the
 * per-packet path needs (latency.bpf.h). Two sockets that share a slot take it in turn, so each
 * is sampled at most once per interval of its own turn, and neither more often than its
 * packets: the cost stays bounded by the packet rate only through collisions, which the table
 * size (tcprtt.h) keeps rare. Nothing needs removing: a closed socket's slot is taken over.
 */
#ifndef __TCPRTT_BPF_H
#define __TCPRTT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "netns.bpf.h"
#include "latency.bpf.h"
#include "remote.bpf.h"
#include "tcprtt.h"

/* The kernel's timer frequency, for icsk_rto (jiffies); libbpf reads it from the kernel's config
 * (/proc/config.gz or /boot/config-<release>); 0 when neither says, and RTO is not sampled. */
extern unsigned int CONFIG_HZ __kconfig __weak;

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING __u64 tcprtt_targ_interval_ns = 1000000000ULL; /* at most one sample per socket per this */
SETTING bool tcprtt_targ_remotes = false; /* the smoothed RTT per peer too */

DECLARE_LATENCY_HISTS(struct tcprtt_key, struct latency_hist, TCPRTT_MAX_HISTS);
DECLARE_REMOTES(struct latency_hist, TCPRTT_MAX_REMOTES);

struct tcprtt_sock {
	__u64 sk;    /* the socket's address */
	__u64 ts_ns; /* when it was last sampled */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCPRTT_MAX_SOCKS);
	__type(key, __u32);
	__type(value, struct tcprtt_sock);
} tcprtt_socks SEC(".maps");

BTF_EXPORT(struct tcprtt_key, tcprtt_key);
BTF_EXPORT(enum tcprtt_quantity, tcprtt_quantity);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(struct remote_key, remote_key);

static __always_inline void tcprtt_add(struct tcprtt_key *key, __u32 quantity, __u64 ns)
{
	struct latency_hist *h;

	key->quantity = quantity;
	h = tcprtt_hists_lookup(key);
	if (h)
		latency_add(h, ns, 0, 0);
}

/* hook "deliver": an established socket received a segment. */
static __always_inline void tcprtt_deliver(bool btf, const struct sock *sk)
{
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 addr = (__u64)sk, now, srtt_us;
	struct tcprtt_key key = {};
	struct remote_key peer = {};
	struct tcprtt_sock *slot;
	struct latency_hist *h;
	struct netns_id id;
	__u32 idx;

	if (!sk)
		return;
	idx = inflight_index(&addr, 1, TCPRTT_MAX_SOCKS - 1);
	slot = bpf_map_lookup_elem(&tcprtt_socks, &idx);
	if (!slot)
		return;
	now = bpf_ktime_get_ns();
	if (slot->sk == addr && now - slot->ts_ns < tcprtt_targ_interval_ns)
		return;
	/* tcp_sock fields lie past struct sock, the type the BTF hooks give: read them probed. */
	srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (!srtt_us)
		return;
	slot->sk = addr;
	slot->ts_ns = now;
	id = sk_netns_id(btf, sk);
	key.netns = id.inum;
	key.netns_cookie = id.cookie;
	tcprtt_add(&key, TCPRTT_SRTT, srtt_us * 1000);
	if (tcprtt_targ_remotes && remote_key_of(&peer, sk, id)) {
		h = tcprtt_remotes_lookup(&peer);
		if (h)
			latency_add(h, srtt_us * 1000, 0, 0);
	}
	tcprtt_add(&key, TCPRTT_RTTVAR, (__u64)(BPF_CORE_READ(tp, mdev_us) >> 2) * 1000);
	if (CONFIG_HZ)
		tcprtt_add(&key, TCPRTT_RTO,
			   (__u64)BPF_CORE_READ(icsk, icsk_rto) * 1000000000ULL / CONFIG_HZ);
}

#endif /* __TCPRTT_BPF_H */
