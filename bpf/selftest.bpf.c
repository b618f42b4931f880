// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * selftest: exercises the BPF machinery end to end on any node (see selftest.h).
 *
 * Two hooks, whose attach plans are the programs at the end of this file (bpf/README.md): "reset",
 * a TCP socket received a RST, and "drop", the kernel dropped a packet.
 * A connect() to a closed port on loopback fires both: the SYN is dropped (NO_SOCKET) and answered
 * by a RST, which the connecting socket receives.
 *
 * Each event is counted per (netns, type) in the per-CPU hash "counts" and, unless targ_emit is
 * false, sent as a struct selftest_event through the rate-limited ring buffer (events.bpf.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "events.bpf.h"
#include "selftest.h"

#define AF_INET 2
#define AF_INET6 10

/* Settings (set between open and load). */
const volatile __u32 targ_netns = 0; /* count and emit events of this namespace only; 0: all */
const volatile bool targ_emit = true; /* false: count only, emit nothing */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct selftest_key);
	__type(value, __u64);
} counts SEC(".maps");

BTF_EXPORT(struct selftest_event, selftest_event);
BTF_EXPORT(enum selftest_event_type, selftest_event_type);

/* Count the event; true when it should also be emitted. */
static __always_inline bool selftest_count(__u32 netns, __u32 type)
{
	struct selftest_key key = { .netns = netns, .type = type };

	if (targ_netns && netns != targ_netns)
		return false;
	percpu_counter_add(&counts, &key, 1);
	return targ_emit;
}

static __always_inline int handle_reset(const struct sock *sk)
{
	struct selftest_event *e;
	__u32 netns = sk_netns(false, sk);
	__u16 family;

	if (!selftest_count(netns, SELFTEST_EVENT_RESET))
		return 0;
	e = event_reserve(struct selftest_event, netns, SELFTEST_EVENT_RESET,
			  BPF_CORE_READ(sk, __sk_common.skc_state));
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	/* The size is the source field's: e->saddr has room for either family. */
	if (family == AF_INET) {
		bpf_core_read(e->saddr, sizeof(__be32), &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->daddr, sizeof(__be32), &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(e->saddr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_daddr);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	event_submit(e);
	return 0;
}

static __always_inline int handle_drop(const struct sk_buff *skb, __u32 reason)
{
	struct selftest_event *e;
	__u32 netns = skb_netns(false, skb);

	if (!selftest_count(netns, SELFTEST_EVENT_DROP))
		return 0;
	e = event_reserve(struct selftest_event, netns, SELFTEST_EVENT_DROP, 0);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->drop_reason = reason;
	e->protocol = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	event_submit(e);
	return 0;
}

/* hook "reset": thin wrappers over handle_reset. */

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(selftest_reset_btf, struct sock *sk)
{
	return handle_reset(sk);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int selftest_reset_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	return handle_reset(ctx->skaddr);
}

SEC("fentry/tcp_reset")
int BPF_PROG(selftest_reset_fentry, struct sock *sk)
{
	return handle_reset(sk);
}

SEC("kprobe/tcp_reset")
int BPF_KPROBE(selftest_reset_kprobe, struct sock *sk)
{
	return handle_reset(sk);
}

/* hook "drop" */

SEC("tp_btf/kfree_skb")
int BPF_PROG(selftest_drop_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return handle_drop(skb, reason);
}

SEC("tracepoint/skb/kfree_skb")
int selftest_drop_tp(struct trace_event_raw_kfree_skb *ctx)
{
	__u32 reason = 0;

	/* The reason field exists since Linux 5.17 (commit c504e5c2f964, "net: skb: introduce kfree_skb_reason()"). */
	if (bpf_core_field_exists(ctx->reason))
		reason = ctx->reason;
	return handle_drop(ctx->skbaddr, reason);
}

#ifdef SELFTEST_BROKEN
/*
 * Built only into the test object selftest_broken.bpf.o: the verifier must reject this program
 * (a map value used without a NULL check), so tests can check how a load failure is reported.
 */
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(selftest_broken_btf, struct sock *sk)
{
	struct selftest_key key = {};
	__u64 *n = bpf_map_lookup_elem(&counts, &key);

	*n += 1;
	return 0;
}
#endif

char LICENSE[] SEC("license") = "GPL";
