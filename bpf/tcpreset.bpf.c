// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * tcpreset: TCP resets sent and received (see tcpreset.h).
 *
 * Two hooks, "send" and "receive", whose candidates are the programs at the end of this file
 * (bpf/README.md). tp_btf/tcp_send_reset has (sk, skb, reason) since Linux 6.10; the function
 * candidates on tcp_v4_send_reset see passive IPv4 resets only (NOSOCK and PROCESS).
 *
 * Which sent reset is which, from the tracepoint's arguments (Linux 6.10+):
 *   skb == NULL  ACTIVE   net/ipv4/tcp_output.c tcp_send_active_reset():
 *                         "skb of trace_tcp_send_reset() keeps the skb that caused RST, skb here
 *                          is different to the troublesome skb, so use NULL"
 *                         trace_tcp_send_reset(sk, NULL, reason);
 *   sk == NULL   NOSOCK   net/ipv4/tcp_ipv4.c tcp_v4_send_reset() (and tcp_v6_send_reset()):
 *                         trace_tcp_send_reset(sk, skb, reason); called with sk NULL from
 *                         tcp_v4_rcv()'s no_tcp_socket path
 *   otherwise    PROCESS  the same call with the socket the packet matched (full, request or
 *                         time-wait), as upstream's kprobe on tcp_v4_send_reset with sk != NULL
 * Before 6.10 (commit 19822a980e19) the passive call fired for full sockets only, so NOSOCK and
 * time-wait resets were not traced; the fentry/kprobe candidates see them but not ACTIVE ones.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tuple.bpf.h"
#include "core_fixes.bpf.h"
#include "typecount.bpf.h"
#include "tcpreset.h"

DECLARE_TYPECOUNT(TCPRESET_MAX_COUNTERS);

BTF_EXPORT(struct tcpreset_event, tcpreset_event);
BTF_EXPORT(enum tcpreset_type, tcpreset_type);
BTF_EXPORT(enum tcpreset_reason, tcpreset_reason);
BTF_EXPORT(struct flow_tuple, flow_tuple);

static __always_inline int handle_reset(const struct sock *sk, const struct sk_buff *skb,
					__u32 type, __u32 reason)
{
	struct tcpreset_event *e;
	struct netns_id id = sk ? sk_netns_id(false, sk) : skb_netns_id(false, skb);
	__u16 state = sk ? BPF_CORE_READ(sk, __sk_common.skc_state) : 0;

	typecount_add(id, type);
	if (!targ_emit)
		return 0;
	e = event_reserve(struct tcpreset_event, id.inum, type, state);
	if (!e)
		return 0;
	/* A passive reset (nosock, process) answers a packet: its flow, reversed, is exactly the
	 * RST's, where a listener or request socket would have no peer or no port. Active and
	 * received resets have no packet (or not this one): the socket's flow. */
	if (skb)
		tuple_from_skb_reply(&e->tuple, skb);
	else
		tuple_from_sock(&e->tuple, sk);
	e->reason = reason;
	event_submit(e);
	return 0;
}

static __always_inline int handle_send(const struct sock *sk, const struct sk_buff *skb,
				       __u32 reason)
{
	__u32 type = !skb ? TCPRESET_ACTIVE : !sk ? TCPRESET_NOSOCK : TCPRESET_PROCESS;

	return handle_reset(sk, skb, type, reason);
}

/* hook "send" */

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcpreset_send_btf, const struct sock *sk, const struct sk_buff *skb,
	     enum sk_rst_reason reason)
{
	return handle_send(sk, skb, reason);
}

SEC("tracepoint/tcp/tcp_send_reset")
int tcpreset_send_tp(void *ctx)
{
	const struct sock *sk;
	const struct sk_buff *skb;
	__u32 reason;

	tp_tcp_send_reset_args(ctx, &sk, &skb, &reason);
	return handle_send(sk, skb, reason);
}

SEC("fentry/tcp_v4_send_reset")
int BPF_PROG(tcpreset_send_fentry, const struct sock *sk, struct sk_buff *skb)
{
	return handle_send(sk, skb, TCPRESET_REASON_NONE);
}

SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(tcpreset_send_kprobe, const struct sock *sk, struct sk_buff *skb)
{
	return handle_send(sk, skb, TCPRESET_REASON_NONE);
}

/* hook "receive" */

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcpreset_receive_btf, struct sock *sk)
{
	return handle_reset(sk, NULL, TCPRESET_RECEIVE, TCPRESET_REASON_NONE);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcpreset_receive_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	return handle_reset(ctx->skaddr, NULL, TCPRESET_RECEIVE, TCPRESET_REASON_NONE);
}

SEC("fentry/tcp_reset")
int BPF_PROG(tcpreset_receive_fentry, struct sock *sk)
{
	return handle_reset(sk, NULL, TCPRESET_RECEIVE, TCPRESET_REASON_NONE);
}

SEC("kprobe/tcp_reset")
int BPF_KPROBE(tcpreset_receive_kprobe, struct sock *sk)
{
	return handle_reset(sk, NULL, TCPRESET_RECEIVE, TCPRESET_REASON_NONE);
}

char LICENSE[] SEC("license") = "GPL";
