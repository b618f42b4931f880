// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * tcpretrans: TCP retransmissions, by kind (see tcpretrans.h).
 *
 * Two hooks, "retransmit" and "synack", whose candidates are the programs at the end of this file
 * (bpf/README.md); tp_btf/tcp_retransmit_skb has (sk, skb, err) since Linux 6.17.
 *
 * Since Linux 6.17 ("tcp: trace retransmit failures in tcp_retransmit_skb") tcp_retransmit_skb
 * also fires for retransmissions that failed (err != 0, nothing sent); those are not counted, as
 * before 6.17 (the kernel counts them in RetransSegs, which it increments before the transmit,
 * and in TCPRetransFail). The fentry/kprobe fallbacks cannot see the result and count attempts.
 *
 * Kind of a tcp_retransmit_skb, from the socket when it fires, read with CO-RE:
 *   sk_state == TCP_SYN_SENT                           SYN
 *   sk_state == TCP_SYN_RECV (Fast Open server)        SYNACK
 *   inet_csk(sk)->icsk_ca_state == TCP_CA_Loss         LOSS: tcp_enter_loss() set it when the
 *                                                      retransmission timer fired (RTO)
 *   otherwise                                          FAST: fast retransmit / SACK or RACK
 *                                                      recovery (TCP_CA_Recovery), tail loss
 *                                                      probe, or any other state
 * Every tcp_retransmit_synack (a request socket's SYN-ACK timer) is SYNACK.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "tuple.bpf.h"
#include "core_fixes.bpf.h"
#include "typecount.bpf.h"
#include "tuples.bpf.h"
#include "tcpretrans.h"

DECLARE_TYPECOUNT(TCPRETRANS_MAX_COUNTERS);
/* Retransmissions per connection (ports included, as upstream keys them): the compat endpoint's
 * tuple labels (tuples.bpf.h). */
DECLARE_TUPLES(tuples, TCPRETRANS_MAX_TUPLES);

BTF_EXPORT(struct tcpretrans_event, tcpretrans_event);
BTF_EXPORT(enum tcpretrans_type, tcpretrans_type);
BTF_EXPORT(struct flow_tuple, flow_tuple);

static __always_inline int count_and_emit(const struct sock *sk, __u32 type, __u16 state,
					  const struct sock *tuple_sk)
{
	struct tcpretrans_event *e;
	struct netns_id id = sk_netns_id(false, sk);
	struct flow_tuple tuple = {};

	typecount_add(id, type);
	tuple_from_sock(&tuple, tuple_sk);
	if (tuple.family)
		tuples_add(&tuples, &tuples_inserted, &tuple);

	if (!targ_emit)
		return 0;
	e = event_reserve(struct tcpretrans_event, id.inum, type, state);
	if (!e)
		return 0;
	e->tuple = tuple;
	event_submit(e);
	return 0;
}

static __always_inline int handle_retransmit(const struct sock *sk, int err)
{
	const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
	__u16 state;
	__u8 ca_state;
	__u32 type;

	if (!sk || err)
		return 0;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	ca_state = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	if (state == TCP_SYN_SENT)
		type = TCPRETRANS_SYN;
	else if (state == TCP_SYN_RECV)
		type = TCPRETRANS_SYNACK;
	else if (ca_state == bpf_core_enum_value(enum tcp_ca_state, TCP_CA_Loss))
		type = TCPRETRANS_LOSS;
	else
		type = TCPRETRANS_FAST;
	return count_and_emit(sk, type, state, sk);
}

/* A request socket's SYN-ACK: the listener sk gives the namespace, the request socket (a struct
 * sock_common underneath, in state TCP_NEW_SYN_RECV) the connection's state and addresses. */
static __always_inline int handle_synack(const struct sock *sk, const struct request_sock *req)
{
	const struct sock *conn = req ? (const struct sock *)req : sk;

	if (!sk)
		return 0;
	return count_and_emit(sk, TCPRETRANS_SYNACK, BPF_CORE_READ(conn, __sk_common.skc_state),
			      conn);
}

/* hook "retransmit" */

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcpretrans_retransmit_btf, const struct sock *sk, const struct sk_buff *skb, int err)
{
	return handle_retransmit(sk, err);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcpretrans_retransmit_tp(void *ctx)
{
	const struct sock *sk;
	int err;

	tp_tcp_retransmit_skb_args(ctx, &sk, &err);
	return handle_retransmit(sk, err);
}

SEC("fentry/tcp_retransmit_skb")
int BPF_PROG(tcpretrans_retransmit_fentry, struct sock *sk)
{
	return handle_retransmit(sk, 0);
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(tcpretrans_retransmit_kprobe, struct sock *sk)
{
	return handle_retransmit(sk, 0);
}

/* hook "synack" */

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(tcpretrans_synack_btf, const struct sock *sk, const struct request_sock *req)
{
	return handle_synack(sk, req);
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int tcpretrans_synack_tp(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	return handle_synack(ctx->skaddr, ctx->req);
}

SEC("fentry/tcp_rtx_synack")
int BPF_PROG(tcpretrans_synack_fentry, const struct sock *sk, struct request_sock *req)
{
	return handle_synack(sk, req);
}

SEC("kprobe/tcp_rtx_synack")
int BPF_KPROBE(tcpretrans_synack_kprobe, const struct sock *sk, struct request_sock *req)
{
	return handle_synack(sk, req);
}

char LICENSE[] SEC("license") = "GPL";
