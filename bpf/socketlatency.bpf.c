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
 * Attach plans: the programs at the end of this file (bpf/README.md). The tracepoints arrived in
 * Linux 6.6 (sk_data_ready), 6.3 (sock_recv_length) and 6.11 (tcp_sendmsg_locked, which has no
 * classic candidate: its record has no socket); tcp_cleanup_rbuf is upstream's read end point.
 *
 * In flight: the table "socks" holds (socket, direction) -> start while a wait is timed. A
 * socket that reaches TCP_CLOSE has its entries removed (counted as discarded); anything else
 * left behind is evicted by a start that needs its slot (counted, latency.bpf.h).
 * Each measurement goes to hists[(netns, direction)] and, with targ_emit and above
 * targ_threshold_ns, to the rate-limited ring buffer (events.bpf.h).
 */
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
#include "socketlatency.h"

#define MSG_PEEK 2
#define SOCK_STREAM 1

/* Settings (set between open and load). */
const volatile bool targ_emit = false;                                  /* send events */
const volatile __u64 targ_threshold_ns = SOCKETLATENCY_SLOW1_NS;        /* events above this */

DECLARE_LATENCY_HISTS(struct socketlatency_key, struct latency_hist, SOCKETLATENCY_MAX_HISTS);

struct sock_key {
	__u64 sk;
	__u32 direction;
	__u32 pad;
};

struct sock_start {
	__u64 ts_ns;
	__u32 pid; /* WRITE: the writer (tgid) */
	__u32 pad;
	char comm[SOCKETLATENCY_COMM_LEN];
};

DECLARE_INFLIGHT(socks, struct sock_key, struct sock_start, SOCKETLATENCY_MAX_INFLIGHT);

BTF_EXPORT(struct socketlatency_event, socketlatency_event);
BTF_EXPORT(enum socketlatency_direction, socketlatency_direction);
BTF_EXPORT(struct socketlatency_key, socketlatency_key);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

/* A TCP socket over IPv4 or IPv6 (sk_protocol was a bitfield before Linux 5.6: read it probed). */
static __always_inline bool is_tcp(bool btf, const struct sock *sk)
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

static __always_inline void measure(bool btf, const struct sock *sk, __u32 direction, __u64 delta,
				    const struct sock_start *s)
{
	struct netns_id id = sk_netns_id(btf, sk);
	struct socketlatency_key key = {
		.netns = id.inum, .netns_cookie = id.cookie, .direction = direction,
	};
	struct socketlatency_event *e;
	struct latency_hist *h;

	h = hists_lookup(&key);
	if (h)
		latency_add(h, delta, SOCKETLATENCY_SLOW0_NS, SOCKETLATENCY_SLOW1_NS);
	if (!targ_emit || delta <= targ_threshold_ns)
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
static __always_inline int handle_ready(bool btf, const struct sock *sk)
{
	struct sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_READ };
	struct sock_start s = {};

	if (!is_tcp(btf, sk) || KREAD(btf, sk, __sk_common.skc_state) == TCP_LISTEN)
		return 0; /* a listener's "data ready" is a connection to accept */
	if (socks_lookup(&key))
		return 0;
	s.ts_ns = bpf_ktime_get_ns();
	socks_start(&key, &s);
	return 0;
}

/* hook "recv": the application read copied bytes (MSG_PEEK reads leave the data waiting). */
static __always_inline int handle_recv(bool btf, const struct sock *sk, int copied, int flags)
{
	struct sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_READ };
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	struct sock_start *s;
	__u64 now;

	if (copied <= 0 || (flags & MSG_PEEK) || !is_tcp(btf, sk))
		return 0;
	s = socks_lookup(&key);
	if (!s) {
		inflight_count(INFLIGHT_UNMATCHED);
		return 0;
	}
	now = bpf_ktime_get_ns();
	measure(btf, sk, SOCKETLATENCY_READ, now > s->ts_ns ? now - s->ts_ns : 0, s);
	if (BPF_CORE_READ(tp, rcv_nxt) != BPF_CORE_READ(tp, copied_seq))
		s->ts_ns = now; /* unread data is left: it waits from now on */
	else
		socks_end(&key);
	return 0;
}

/* hook "sendmsg": the application writes. A socket with no unsent data starts waiting. */
static __always_inline int handle_sendmsg(bool btf, const struct sock *sk)
{
	struct sock_key key = { .sk = (__u64)sk, .direction = SOCKETLATENCY_WRITE };
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	struct sock_start s = {};

	if (!is_tcp(btf, sk))
		return 0;
	/*
	 * Unsent data: its wait is being timed already (or, started before attach or evicted, is
	 * picked up at the first write after the socket drains). Asked of the socket, whose lines
	 * are hot here, rather than of the table: the hook runs for every buffer sendmsg() fills
	 * (about 3 per GSO packet under iperf3), and a table slot is most often a cache miss.
	 */
	if (BPF_CORE_READ(tp, write_seq) != BPF_CORE_READ(tp, snd_nxt))
		return 0;
	s.ts_ns = bpf_ktime_get_ns();
	s.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(s.comm, sizeof(s.comm));
	socks_start(&key, &s);
	return 0;
}

/*
 * hook "xmit": a packet reaches a device. Only a TCP segment of new data (its sequence number is
 * snd_nxt, which TCP advances after the transmit returns) ends a socket's write wait; pure ACKs
 * and retransmissions do not.
 */
static __always_inline int handle_xmit(bool btf, const struct sk_buff *skb)
{
	struct sock_key key = { .direction = SOCKETLATENCY_WRITE };
	const struct tcp_sock *tp;
	const struct sock *sk;
	struct sock_start *s;
	struct tcpseg seg;
	__u64 now;

	if (!skb)
		return 0;
	sk = KREAD(btf, skb, sk);
	if (!sk)
		return 0;
	key.sk = (__u64)sk;
	s = socks_lookup(&key);
	if (!s)
		return 0; /* only sockets we time (full TCP sockets) have entries */
	tp = (const struct tcp_sock *)sk;
	if (!tcp_segment(btf, skb, &seg) || !seg.payload || seg.seq != BPF_CORE_READ(tp, snd_nxt))
		return 0;
	now = bpf_ktime_get_ns();
	measure(btf, sk, SOCKETLATENCY_WRITE, now > s->ts_ns ? now - s->ts_ns : 0, s);
	if (seg.seq + seg.payload != BPF_CORE_READ(tp, write_seq))
		s->ts_ns = now; /* more unsent data: it waits from now on */
	else
		socks_end(&key);
	return 0;
}

/* hook "close": a socket reaching TCP_CLOSE never ends its waits. */
static __always_inline int handle_state(const struct sock *sk, int newstate)
{
	struct sock_key key = { .sk = (__u64)sk };

	if (newstate != TCP_CLOSE || !sk)
		return 0;
	key.direction = SOCKETLATENCY_READ;
	socks_discard(&key);
	key.direction = SOCKETLATENCY_WRITE;
	socks_discard(&key);
	return 0;
}

/* hook "ready" */

SEC("tp_btf/sk_data_ready")
int BPF_PROG(socketlatency_ready_btf, const struct sock *sk)
{
	return handle_ready(true, sk);
}

SEC("tracepoint/sock/sk_data_ready")
int socketlatency_ready_tp(struct trace_event_raw_sk_data_ready *ctx)
{
	return handle_ready(false, ctx->skaddr);
}

SEC("fentry/sock_def_readable")
int BPF_PROG(socketlatency_ready_fentry, struct sock *sk)
{
	return handle_ready(true, sk);
}

SEC("kprobe/sock_def_readable")
int BPF_KPROBE(socketlatency_ready_kprobe, struct sock *sk)
{
	return handle_ready(false, sk);
}

/* hook "recv" */

SEC("tp_btf/sock_recv_length")
int BPF_PROG(socketlatency_recv_btf, struct sock *sk, int ret, int flags)
{
	return handle_recv(true, sk, ret, flags);
}

SEC("tracepoint/sock/sock_recv_length")
int socketlatency_recv_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	return handle_recv(false, ctx->sk, ctx->ret, ctx->flags);
}

SEC("fentry/tcp_cleanup_rbuf")
int BPF_PROG(socketlatency_recv_fentry, struct sock *sk, int copied)
{
	return handle_recv(true, sk, copied, 0);
}

SEC("kprobe/tcp_cleanup_rbuf")
int BPF_KPROBE(socketlatency_recv_kprobe, struct sock *sk, int copied)
{
	return handle_recv(false, sk, copied, 0);
}

/* hook "sendmsg" */

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(socketlatency_sendmsg_btf, const struct sock *sk)
{
	return handle_sendmsg(true, sk);
}

SEC("fentry/tcp_sendmsg_locked")
int BPF_PROG(socketlatency_sendmsg_fentry, struct sock *sk)
{
	return handle_sendmsg(true, sk);
}

SEC("kprobe/tcp_sendmsg_locked")
int BPF_KPROBE(socketlatency_sendmsg_kprobe, struct sock *sk)
{
	return handle_sendmsg(false, sk);
}

/* hook "xmit" */

SEC("tp_btf/net_dev_queue")
int BPF_PROG(socketlatency_xmit_btf, struct sk_buff *skb)
{
	return handle_xmit(true, skb);
}

SEC("tracepoint/net/net_dev_queue")
int socketlatency_xmit_tp(struct trace_event_raw_net_dev_template *ctx)
{
	return handle_xmit(false, ctx->skbaddr);
}

SEC("fentry/__dev_queue_xmit")
int BPF_PROG(socketlatency_xmit_fentry, struct sk_buff *skb)
{
	return handle_xmit(true, skb);
}

SEC("kprobe/__dev_queue_xmit")
int BPF_KPROBE(socketlatency_xmit_kprobe, struct sk_buff *skb)
{
	return handle_xmit(false, skb);
}

/* hook "close" */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(socketlatency_close_btf, const struct sock *sk, int oldstate, int newstate)
{
	return handle_state(sk, newstate);
}

SEC("tracepoint/sock/inet_sock_set_state")
int socketlatency_close_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return handle_state(ctx->skaddr, ctx->newstate);
}

SEC("fentry/tcp_set_state")
int BPF_PROG(socketlatency_close_fentry, struct sock *sk, int state)
{
	return handle_state(sk, state);
}

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(socketlatency_close_kprobe, struct sock *sk, int state)
{
	return handle_state(sk, state);
}

char LICENSE[] SEC("license") = "GPL";
