// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * tcpconnect: TCP connection attempts, how they end, and how long the handshake takes (see
 * tcpconnect.h). Part of the shared object (datapath.bpf.c), whose hooks call:
 *
 *   state  (sock:inet_sock_set_state; tcp_set_state) tcpconnect_state():
 *          CLOSE -> SYN_SENT   connect() sent the SYN: counted as an attempt, and the socket's
 *                              start time put in the in-flight table "socks" (latency.bpf.h);
 *          SYN_SENT -> ESTABLISHED   the SYN-ACK came: the interval goes to hists[netns];
 *          SYN_SENT -> CLOSE   the attempt failed; the cause is the error the kernel set on
 *                              the socket before closing it (tcp_reset(): ECONNREFUSED;
 *                              tcp_write_err(): ETIMEDOUT, or the soft error an ICMP left;
 *                              none when the application closed it), unless a SYN of it was
 *                              dropped on this node (below) and it was not refused;
 *          any other state -> CLOSE with ECONNRESET or EPIPE: tcp_reset() on a connection past
 *                              its handshake (a local abort, tcp_disconnect(), closes before it
 *                              sets its error, so it is not counted).
 *   free   (skb:kfree_skb) tcpconnect_free(): a packet dropped while still owned by a socket in
 *          "socks" (an outgoing SYN: skb->sk is set until the packet leaves the namespace, as
 *          veth's skb_scrub_packet() orphans it) records its drop reason in the entry.
 *
 * Outcomes are counted in counters[(netns, outcome)] and, with tcpconnect_targ_remotes, in
 * remotes[(netns, peer address)] (remote.bpf.h: one hash lookup per counted state change), with
 * the connect latency; failures are sent, with
 * tcpconnect_targ_emit, through the rate-limited ring buffer (events.bpf.h). A socket in
 * SYN_SENT before the probe started (entries older than tcpconnect_targ_since_ns, left by an
 * earlier run while the object stayed loaded, are discarded), or evicted from "socks"
 * (counted), is not followed.
 */
#ifndef __TCPCONNECT_BPF_H
#define __TCPCONNECT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kread.bpf.h"
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "remote.bpf.h"
#include "tcpconnect.h"

/* include/uapi/asm-generic/errno-base.h and errno.h (the values every Linux architecture with
 * BTF uses). */
#define TCPCONNECT_EPIPE 32
#define TCPCONNECT_ECONNRESET 104
#define TCPCONNECT_ETIMEDOUT 110
#define TCPCONNECT_ECONNREFUSED 111

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING bool tcpconnect_targ_emit = false;                 /* send events */
SETTING bool tcpconnect_targ_remotes = false;              /* count per peer too */
SETTING __u64 tcpconnect_targ_since_ns = 0; /* the probe started: older entries of socks are stale */
SETTING __u32 tcpconnect_targ_reason_consumed = ~0U;       /* SKB_CONSUMED in this kernel */
SETTING __u32 tcpconnect_targ_reason_not_dropped = ~0U;    /* SKB_NOT_DROPPED_YET in this kernel */

DECLARE_EVENTS();
DECLARE_COUNTERS(struct typecount_key, TCPCONNECT_MAX_COUNTERS);
DECLARE_LATENCY_HISTS(struct tcpconnect_key, struct latency_hist, TCPCONNECT_MAX_HISTS);
DECLARE_REMOTES(struct tcpconnect_remote, TCPCONNECT_MAX_REMOTES);
_Static_assert(TCPCONNECT_RESET < TCPCONNECT_OUTCOMES, "tcpconnect_remote.outcomes misses an outcome");

struct tcpconnect_sock_key {
	__u64 sk;
};

struct tcpconnect_sock {
	__u64 ts_ns;       /* the SYN sent */
	__u32 drop_reason; /* of the last SYN dropped here; TCPCONNECT_NO_DROP */
	__u32 drops;
};

DECLARE_INFLIGHT(tcpconnect_socks, struct tcpconnect_sock_key, struct tcpconnect_sock,
		 TCPCONNECT_MAX_INFLIGHT);

BTF_EXPORT(struct tcpconnect_event, tcpconnect_event);
BTF_EXPORT(enum tcpconnect_outcome, tcpconnect_outcome);
BTF_EXPORT(enum tcpconnect_drop, tcpconnect_drop);
BTF_EXPORT(struct typecount_key, typecount_key);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);
BTF_EXPORT(struct remote_key, remote_key);
BTF_EXPORT(struct tcpconnect_remote, tcpconnect_remote);

/* Count outcome for the namespace and, with remotes on, for the socket's peer; latency_ns (or
 * ~0: none) is the connect latency of an ESTABLISHED. */
static __always_inline void tcpconnect_count(const struct sock *sk, struct netns_id id,
					     __u32 outcome, __u64 latency_ns)
{
	struct typecount_key key = { .netns = id.inum, .netns_cookie = id.cookie, .type = outcome };
	struct remote_key peer = {};
	struct tcpconnect_remote *r;

	tcpconnect_counters_add(&key);
	if (!tcpconnect_targ_remotes || outcome >= TCPCONNECT_OUTCOMES ||
	    !remote_key_of(&peer, sk, id))
		return;
	r = tcpconnect_remotes_lookup(&peer);
	if (!r)
		return;
	__sync_fetch_and_add(&r->outcomes[outcome], 1);
	if (latency_ns != ~0ULL)
		latency_add(&r->duration, latency_ns, 0, 0);
}

static __always_inline void tcpconnect_fail(const struct sock *sk, struct netns_id id,
					    __u32 outcome, int oldstate, __u32 error,
					    const struct tcpconnect_sock *s, __u64 now)
{
	struct tcpconnect_event *e;

	tcpconnect_count(sk, id, outcome, ~0ULL);
	if (!tcpconnect_targ_emit)
		return;
	e = event_reserve(struct tcpconnect_event, id.inum, outcome, oldstate);
	if (!e)
		return;
	tuple_from_sock(&e->tuple, sk);
	e->error = error;
	e->drop_reason = s ? s->drop_reason : TCPCONNECT_NO_DROP;
	e->drops = s ? s->drops : 0;
	e->duration_ns = s && now > s->ts_ns ? now - s->ts_ns : 0;
	e->syns = BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);
	event_submit(e);
}

/* The outcome of an attempt that closed in SYN_SENT with `error` set (0: none). */
static __always_inline __u32 tcpconnect_cause(__u32 error, const struct tcpconnect_sock *s)
{
	if (error == TCPCONNECT_ECONNREFUSED)
		return TCPCONNECT_REFUSED;
	if (s->drops)
		return TCPCONNECT_DROPPED;
	if (error == TCPCONNECT_ETIMEDOUT)
		return TCPCONNECT_TIMEOUT;
	return error ? TCPCONNECT_UNREACHABLE : TCPCONNECT_ABORTED;
}

/* hook "state": a socket moves from oldstate to newstate. */
static __always_inline void tcpconnect_state(bool btf, const struct sock *sk, int oldstate,
					     int newstate)
{
	struct tcpconnect_sock_key key = { .sk = (__u64)sk };
	struct tcpconnect_sock s = { .drop_reason = TCPCONNECT_NO_DROP };
	struct latency_hist *h;
	struct netns_id id;
	__u32 error;
	bool found;
	__u64 now;

	if (!sk)
		return;
	if (newstate == TCP_SYN_SENT) {
		if (KREAD_BITFIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
			return;
		s.ts_ns = bpf_ktime_get_ns();
		tcpconnect_socks_start(&key, &s);
		tcpconnect_count(sk, sk_netns_id(btf, sk), TCPCONNECT_ATTEMPT, ~0ULL);
		return;
	}
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return;
	found = tcpconnect_socks_get(&key, &s);
	if (found && s.ts_ns < tcpconnect_targ_since_ns) {
		tcpconnect_socks_discard(&key); /* from before a restart: not followed */
		found = false;
	}
	if (found) {
		tcpconnect_socks_end(&key);
		now = bpf_ktime_get_ns();
		id = sk_netns_id(btf, sk);
		if (newstate == TCP_ESTABLISHED) {
			struct tcpconnect_key hkey = { .netns = id.inum, .netns_cookie = id.cookie };
			__u64 took = now > s.ts_ns ? now - s.ts_ns : 0;

			tcpconnect_count(sk, id, TCPCONNECT_ESTABLISHED, took);
			h = tcpconnect_hists_lookup(&hkey);
			if (h)
				latency_add(h, took, 0, 0);
			return;
		}
		error = BPF_CORE_READ(sk, sk_err);
		tcpconnect_fail(sk, id, tcpconnect_cause(error, &s), oldstate, error, &s, now);
		return;
	}
	if (newstate != TCP_CLOSE || oldstate == TCP_SYN_SENT)
		return;
	error = BPF_CORE_READ(sk, sk_err);
	if (error != TCPCONNECT_ECONNRESET && error != TCPCONNECT_EPIPE)
		return;
	if (KREAD_BITFIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	tcpconnect_fail(sk, sk_netns_id(btf, sk), TCPCONNECT_RESET, oldstate, error, NULL, 0);
}

/* hook "free": a packet dropped; one a socket in SYN_SENT still owns is its SYN. */
static __always_inline void tcpconnect_free(bool btf, const struct sk_buff *skb, __u32 reason)
{
	struct tcpconnect_sock_key key = {};
	struct tcpconnect_sock *s;

	if (!skb || reason == tcpconnect_targ_reason_consumed ||
	    reason == tcpconnect_targ_reason_not_dropped)
		return;
	key.sk = (__u64)KREAD(btf, skb, sk);
	if (!key.sk)
		return;
	s = tcpconnect_socks_lookup(&key);
	if (!s || s->ts_ns < tcpconnect_targ_since_ns)
		return;
	s->drop_reason = reason;
	s->drops += 1;
}

#endif /* __TCPCONNECT_BPF_H */
