// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * socketlatency: how long TCP data waits in a socket, per (namespace, direction); see
 * socketlatency.h.
 *
 *   READ   from sock:sk_data_ready (data was queued on a socket that had none unread: the
 *          kernel wakes the reader) to sock:sock_recv_length with a positive length (the
 *          application's recvmsg() returned data). The wait a reader leaves data in its
 *          receive queue.
 *   WRITE  from tcp:tcp_sendmsg_locked (the application's sendmsg() on a socket that had no
 *          unsent data) to net:net_dev_queue of the socket's next segment of new data (TCP
 *          handed it to the device: it left the socket). The wait written data spends in the
 *          write queue: congestion or receive window, Nagle, cork, pacing, small queues.
 *
 * After an end point, when data is still waiting (unread bytes: rcv_nxt != copied_seq; unsent
 * bytes: the segment did not reach write_seq) the wait starts again at that moment, so each
 * measurement is one gap during which the socket held waiting data.
 *
 * Part of the shared object (datapath.bpf.c), whose hooks call socketlatency_<hook>(): ready,
 * recv, sendmsg, queue (net_dev_queue) and state (inet_sock_set_state). The tracepoints arrived in
 * Linux 6.6 (sk_data_ready), 6.3 (sock_recv_length) and 6.11 (tcp_sendmsg_locked, which has no
 * classic candidate: its record has no socket); tcp_cleanup_rbuf is upstream's read end point.
 *
 * In flight: the table "socks" holds (socket, direction) -> start while a wait is timed. A
 * socket that reaches TCP_CLOSE has its entries removed (counted as discarded); anything else
 * left behind is evicted by a start that needs its slot (counted, latency.bpf.h).
 * Each measurement goes to hists[(netns, direction)] and, with socketlatency_targ_emit and above
 * socketlatency_targ_threshold_ns, to the rate-limited ring buffer (events.bpf.h).
 */
#ifndef __SOCKETLATENCY_BPF_H
#define __SOCKETLATENCY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "tcpseg.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "hookrun.bpf.h"
#include "socketlatency.h"

#define MSG_PEEK 2
#define SOCK_STREAM 1

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING bool socketlatency_targ_emit = false;                           /* send events */
SETTING __u64 socketlatency_targ_threshold_ns = SOCKETLATENCY_SLOW1_NS; /* events above this */
SETTING __u64 socketlatency_targ_since_ns = 0; /* the probe started: older starts are stale */

DECLARE_EVENTS();
DECLARE_LATENCY_HISTS(struct socketlatency_key, struct latency_hist, SOCKETLATENCY_MAX_HISTS);

struct socketlatency_sock_key {
	__u64 sk;
	__u32 direction;
	__u32 pad;
};

struct socketlatency_sock {
	__u64 ts_ns;
	__u32 pid; /* WRITE: the writer (tgid) */
	__u32 pad;
	char comm[SOCKETLATENCY_COMM_LEN];
};

DECLARE_INFLIGHT(socketlatency_socks, struct socketlatency_sock_key, struct socketlatency_sock,
		 SOCKETLATENCY_MAX_INFLIGHT);

BTF_EXPORT(struct socketlatency_event, socketlatency_event);
BTF_EXPORT(enum socketlatency_direction, socketlatency_direction);
BTF_EXPORT(struct socketlatency_key, socketlatency_key);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

/* A TCP socket over IPv4 or IPv6 (sk_protocol was a bitfield before Linux 5.6: read it probed). */
static __always_inline bool socketlatency_is_tcp(bool btf, const struct sock *sk)
{
	__u16 family;

	if (!sk)
		return false;
	family = KREAD(btf, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	return KREAD_BITFIELD(btf, sk, sk_protocol) == IPPROTO_TCP &&
	       KREAD_BITFIELD(btf, sk, sk_type) == SOCK_STREAM;
}

static __always_inline void socketlatency_measure(bool btf, const struct sock *sk,
						  __u32 direction, __u64 delta,
						  const struct socketlatency_sock *s)
{
	struct netns_id id = sk_netns_id(btf, sk);
	struct socketlatency_key key = {
		.netns = id.inum, .netns_cookie = id.cookie, .direction = direction,
	};
	struct socketlatency_event *e;
	struct latency_hist *h;

	h = socketlatency_hists_lookup(&key);
	if (h)
		latency_add(h, delta, SOCKETLATENCY_SLOW0_NS, SOCKETLATENCY_SLOW1_NS);
	if (!socketlatency_targ_emit || delta <= socketlatency_targ_threshold_ns)
		return;
	e = event_reserve(struct socketlatency_event, key.netns, direction,
			  BPF_CORE_READ(sk, __sk_common.skc_state));
	if (!e)
		return;
	tuple_from_sock(&e->tuple, sk);
	e->latency_ns = delta;
	if (direction == SOCKETLATENCY_READ) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	} else {
		e->pid = s->pid;
		__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	}
	event_submit(e);
}

/* hook "ready": data was queued on the socket. The oldest unread data's wait goes on. */
static __always_inline void socketlatency_ready(bool btf, const struct sock *sk,
						struct hook_run *run)
{
	struct socketlatency_sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_READ };
	struct socketlatency_sock start = {}, *s;

	if (!socketlatency_is_tcp(btf, sk) || KREAD(btf, sk, __sk_common.skc_state) == TCP_LISTEN)
		return; /* a listener's "data ready" is a connection to accept */
	s = socketlatency_socks_lookup(&key);
	if (s && s->ts_ns >= socketlatency_targ_since_ns)
		return;
	start.ts_ns = hook_now(run);
	socketlatency_socks_start(&key, &start);
}

/* hook "recv": the application read copied bytes (MSG_PEEK reads leave the data waiting). */
static __always_inline void socketlatency_recv(bool btf, const struct sock *sk, int copied,
					       int flags, struct hook_run *run)
{
	struct socketlatency_sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_READ };
	struct socketlatency_sock *s;
	__u64 now;

	if (copied <= 0 || (flags & MSG_PEEK) || !socketlatency_is_tcp(btf, sk))
		return;
	s = socketlatency_socks_lookup(&key);
	if (!s || s->ts_ns < socketlatency_targ_since_ns) {
		socketlatency_inflight_count(INFLIGHT_UNMATCHED);
		return;
	}
	now = hook_now(run);
	socketlatency_measure(btf, sk, SOCKETLATENCY_READ, now > s->ts_ns ? now - s->ts_ns : 0, s);
	if (KREAD_TCP(btf, sk, rcv_nxt) != KREAD_TCP(btf, sk, copied_seq))
		s->ts_ns = now; /* unread data is left: it waits from now on */
	else
		socketlatency_socks_end(&key);
}

/* hook "sendmsg": the application writes. A socket with no unsent data starts waiting. */
static __always_inline void socketlatency_sendmsg(bool btf, const struct sock *sk,
						  struct hook_run *run)
{
	struct socketlatency_sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_WRITE };
	struct socketlatency_sock s = {};

	if (!socketlatency_is_tcp(btf, sk))
		return;
	/*
	 * Unsent data: its wait is being timed already (or, started before attach or evicted, is
	 * picked up at the first write after the socket drains). Asked of the socket, whose lines
	 * are hot here, rather than of the table: the hook runs for every buffer sendmsg() fills
	 * (about 3 per GSO packet under iperf3), and a table slot is most often a cache miss.
	 */
	if (KREAD_TCP(btf, sk, write_seq) != KREAD_TCP(btf, sk, snd_nxt))
		return;
	s.ts_ns = hook_now(run);
	s.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(s.comm, sizeof(s.comm));
	socketlatency_socks_start(&key, &s);
}

/*
 * hook "queue": a packet reaches a device (net_dev_queue). Only a TCP segment of new data (its sequence number is
 * snd_nxt, which TCP advances after the transmit returns) ends a socket's write wait; pure ACKs
 * and retransmissions do not.
 */
static __always_inline void socketlatency_queue(bool btf, const struct sk_buff *skb,
						struct hook_run *run)
{
	struct socketlatency_sock_key key = { .direction = SOCKETLATENCY_WRITE };
	const struct sock *sk;
	struct socketlatency_sock *s;
	const struct tcpseg *seg;
	__u64 now;

	if (!skb)
		return;
	sk = KREAD(btf, skb, sk);
	if (!sk)
		return;
	/* The segment first: kernellatency has most often read it in this run, and a pure ACK needs
	 * no look in the table, whose slot for the socket is most often a cache miss. */
	seg = hook_tcp_segment(btf, run, skb);
	if (!seg || !seg->payload)
		return;
	key.sk = (__u64)sk;
	s = socketlatency_socks_lookup(&key);
	if (!s || s->ts_ns < socketlatency_targ_since_ns)
		return; /* only sockets we time (full TCP sockets) have entries */
	/*
	 * Probe reads (btf false) even in tp_btf: skb->sk loads as an RCU pointer, which
	 * bpf_skc_to_tcp_sock() refuses; only segments of a socket being timed get here.
	 */
	if (seg->seq != KREAD_TCP(false, sk, snd_nxt))
		return;
	now = hook_now(run);
	socketlatency_measure(btf, sk, SOCKETLATENCY_WRITE, now > s->ts_ns ? now - s->ts_ns : 0, s);
	if (seg->seq + seg->payload != KREAD_TCP(false, sk, write_seq))
		s->ts_ns = now; /* more unsent data: it waits from now on */
	else
		socketlatency_socks_end(&key);
}

/* hook "state": a socket reaching TCP_CLOSE never ends its waits. */
static __always_inline void socketlatency_state(const struct sock *sk, int newstate)
{
	struct socketlatency_sock_key key = { .sk = (__u64)sk };

	if (newstate != TCP_CLOSE || !sk)
		return;
	key.direction = SOCKETLATENCY_READ;
	socketlatency_socks_discard(&key);
	key.direction = SOCKETLATENCY_WRITE;
	socketlatency_socks_discard(&key);
}

#endif /* __SOCKETLATENCY_BPF_H */
