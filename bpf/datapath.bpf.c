// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * datapath: one program per kernel hook for every probe that needs the hook (datapath.h).
 *
 * Each probe's kernel side stays under its own stem: bpf/<probe>.bpf.h (its handlers
 * <probe>_<hook>(), maps, settings) and bpf/<probe>.h (its records). Included here between
 * PROBE_NAME definitions (include/probe.bpf.h), its maps and settings are named <probe>_<name>;
 * its settings are plain globals, since the object is loaded once and its probes start and stop
 * while it stays attached.
 *
 * A hook's program reads datapath_enabled once and runs the handler of each probe whose bit is
 * set, in the order below, so a probe that is off costs one test and no clock read or lookup.
 * The handlers of one run share a struct hook_run (include/hookrun.bpf.h): the clock and the
 * packet's TCP segment are read once, by the first handler that needs them.
 * User space sets a bit after writing the probe's settings and clears it when the probe stops
 * (otel_kubeskoop/bpf/shared.py). With datapath_stats (config bpfStats), each handler's run
 * count and time go to datapath_costs[DATAPATH_<PROBE>_<HOOK>], per CPU: the kernel's statistics
 * are per program, and these programs are shared.
 *
 * Hooks and their candidates, most preferred first (bpf/README.md, "Programs and attach plans"):
 *   free     skb:kfree_skb; sk_skb_reason_drop (6.10+) or kfree_skb_reason (5.17 to 6.9)
 *   consume  skb:consume_skb; consume_skb
 *   queue    net:net_dev_queue (tp_btf, then tp_btf without dns' dynptr); __dev_queue_xmit
 *   rx       net:netif_receive_skb (the same two tp_btf programs); ip_rcv
 *   deliver  tcp:tcp_probe; tcp_rcv_established
 *   start    net:net_dev_start_xmit
 *   xmit     net:net_dev_xmit
 *   ready    sock:sk_data_ready; sock_def_readable
 *   recv     sock:sock_recv_length; tcp_cleanup_rbuf
 *   sendmsg  tcp:tcp_sendmsg_locked (tp_btf only: its classic record has no socket)
 *   state    sock:inet_sock_set_state; tcp_set_state
 *
 * dns runs on queue (queries a local socket sends) and rx (responses), whose programs every
 * packet runs anyway: a port test on each packet, no program of its own (bpf/dns.bpf.h).
 */
#define PROBE_SHARED
#define SETTING volatile
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "probe.bpf.h"
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "tcpseg.bpf.h"
#include "events.bpf.h"
#include "tuples.bpf.h"
#include "latency.bpf.h"
#include "hookrun.bpf.h"
#include "datapath.h"

#undef PROBE_NAME
#define PROBE_NAME(x) packetloss_##x
#include "packetloss.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) kernellatency_##x
#include "kernellatency.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) netiftxlat_##x
#include "netiftxlat.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) socketlatency_##x
#include "socketlatency.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) tcprtt_##x
#include "tcprtt.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) tcpconnect_##x
#include "tcpconnect.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) dns_##x
#include "dns.bpf.h"
#undef PROBE_NAME
#define PROBE_NAME(x) x

/* Written by user space at any time (.bss). */
volatile __u32 datapath_enabled; /* bit 1 << DATAPATH_<PROBE> per probe that runs */
volatile bool datapath_stats;    /* count each handler's runs and time (bpfStats) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DATAPATH__SLOTS);
	__type(key, __u32);
	__type(value, struct datapath_cost);
} datapath_costs SEC(".maps");

BTF_EXPORT(enum datapath_probe, datapath_probe);
BTF_EXPORT(enum datapath_slot, datapath_slot);

static __always_inline __u64 datapath_clock(void)
{
	return datapath_stats ? bpf_ktime_get_ns() : 0;
}

static __always_inline void datapath_cost(__u32 slot, __u64 began)
{
	struct datapath_cost *c;

	if (!began)
		return;
	c = bpf_map_lookup_elem(&datapath_costs, &slot);
	if (c) {
		c->runs += 1;
		c->ns += bpf_ktime_get_ns() - began;
	}
}

/* Run `call` when PROBE's bit is in `on`, counting its cost on HOOK when statistics are on. */
#define RUN(on, PROBE, HOOK, call)						\
	do {									\
		if ((on) & (1U << DATAPATH_##PROBE)) {				\
			__u64 __began = datapath_clock();			\
										\
			call;							\
			datapath_cost(DATAPATH_##PROBE##_##HOOK, __began);	\
		}								\
	} while (0)

/* hook "free": packetloss counts drops; the latency probes forget packets still in flight. */

SEC("tp_btf/kfree_skb")
int BPF_PROG(datapath_free_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason,
	     struct sock *rx_sk)
{
	__u32 on = datapath_enabled;

	RUN(on, PACKETLOSS, FREE, packetloss_drop(ctx, skb, (__u64)location, reason, rx_sk));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(true, skb, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(skb));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(true, skb));
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int datapath_free_tp(struct trace_event_raw_kfree_skb *ctx)
{
	__u32 on = datapath_enabled, reason = 0;
	const struct sock *rx_sk = NULL;

	/* reason: Linux 5.17, commit c504e5c2f964 ("net: skb: introduce kfree_skb_reason()");
	 * rx_sk: Linux 6.10, commit c53795d48ee8 ("net: add rx_sk to trace_kfree_skb"). */
	if (bpf_core_field_exists(ctx->reason))
		reason = ctx->reason;
	if (bpf_core_field_exists(ctx->rx_sk))
		rx_sk = ctx->rx_sk;
	RUN(on, PACKETLOSS, FREE,
	    packetloss_drop(ctx, ctx->skbaddr, (__u64)ctx->location, reason, rx_sk));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(false, ctx->skbaddr, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(ctx->skbaddr));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(false, ctx->skbaddr));
	return 0;
}

SEC("fentry/sk_skb_reason_drop")
int BPF_PROG(datapath_free_reason_drop_fentry, struct sock *sk, struct sk_buff *skb,
	     enum skb_drop_reason reason)
{
	__u32 on = datapath_enabled;

	RUN(on, PACKETLOSS, FREE, packetloss_drop(ctx, skb, 0, reason, sk));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(true, skb, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(skb));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(true, skb));
	return 0;
}

SEC("fentry/kfree_skb_reason")
int BPF_PROG(datapath_free_skb_reason_fentry, struct sk_buff *skb, enum skb_drop_reason reason)
{
	__u32 on = datapath_enabled;

	RUN(on, PACKETLOSS, FREE, packetloss_drop(ctx, skb, 0, reason, NULL));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(true, skb, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(skb));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(true, skb));
	return 0;
}

SEC("kprobe/sk_skb_reason_drop")
int BPF_KPROBE(datapath_free_reason_drop_kprobe, struct sock *sk, struct sk_buff *skb,
	       enum skb_drop_reason reason)
{
	__u32 on = datapath_enabled;

	RUN(on, PACKETLOSS, FREE, packetloss_drop(ctx, skb, 0, reason, sk));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(false, skb, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(skb));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(false, skb));
	return 0;
}

SEC("kprobe/kfree_skb_reason")
int BPF_KPROBE(datapath_free_skb_reason_kprobe, struct sk_buff *skb, enum skb_drop_reason reason)
{
	__u32 on = datapath_enabled;

	RUN(on, PACKETLOSS, FREE, packetloss_drop(ctx, skb, 0, reason, NULL));
	RUN(on, TCPCONNECT, FREE, tcpconnect_free(false, skb, reason));
	RUN(on, KERNELLATENCY, FREE, kernellatency_free(skb));
	RUN(on, NETIFTXLAT, FREE, netiftxlat_free(false, skb));
	return 0;
}

/* hook "consume": a packet freed after use; the latency probes forget it if still in flight. */

#define CONSUME(btf, skb)							\
	do {									\
		__u32 on = datapath_enabled;					\
										\
		RUN(on, KERNELLATENCY, CONSUME, kernellatency_free(skb));	\
		RUN(on, NETIFTXLAT, CONSUME, netiftxlat_free(btf, skb));	\
	} while (0)

SEC("tp_btf/consume_skb")
int BPF_PROG(datapath_consume_btf, struct sk_buff *skb)
{
	CONSUME(true, skb);
	return 0;
}

SEC("tracepoint/skb/consume_skb")
int datapath_consume_tp(struct trace_event_raw_consume_skb *ctx)
{
	CONSUME(false, ctx->skbaddr);
	return 0;
}

SEC("fentry/consume_skb")
int BPF_PROG(datapath_consume_fentry, struct sk_buff *skb)
{
	CONSUME(true, skb);
	return 0;
}

SEC("kprobe/consume_skb")
int BPF_KPROBE(datapath_consume_kprobe, struct sk_buff *skb)
{
	CONSUME(false, skb);
	return 0;
}

/* hook "queue": a packet is handed to a device. */

#define QUEUE(btf, frags, skb)								\
	do {									\
		__u32 on = datapath_enabled;					\
		struct hook_run run = {};					\
										\
		RUN(on, KERNELLATENCY, QUEUE, kernellatency_queue(btf, skb, &run));	\
		RUN(on, NETIFTXLAT, QUEUE, netiftxlat_queue(btf, skb, &run));		\
		RUN(on, SOCKETLATENCY, QUEUE, socketlatency_queue(btf, skb, &run));	\
		RUN(on, DNS, QUEUE, dns_queue(btf, frags, skb, &run));			\
	} while (0)

SEC("tp_btf/net_dev_queue")
int BPF_PROG(datapath_queue_btf, struct sk_buff *skb)
{
	QUEUE(true, true, skb);
	return 0;
}

/* The same where the kernel refuses a dynptr over the skb here (dns.bpf.h). */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(datapath_queue_linear_btf, struct sk_buff *skb)
{
	QUEUE(true, false, skb);
	return 0;
}

SEC("tracepoint/net/net_dev_queue")
int datapath_queue_tp(struct trace_event_raw_net_dev_template *ctx)
{
	QUEUE(false, false, ctx->skbaddr);
	return 0;
}

SEC("fentry/__dev_queue_xmit")
int BPF_PROG(datapath_queue_fentry, struct sk_buff *skb)
{
	QUEUE(true, false, skb);
	return 0;
}

SEC("kprobe/__dev_queue_xmit")
int BPF_KPROBE(datapath_queue_kprobe, struct sk_buff *skb)
{
	QUEUE(false, false, skb);
	return 0;
}

/* hook "rx": a packet enters the stack. */

#define RX(btf, frags, skb)								\
	do {									\
		__u32 on = datapath_enabled;					\
		struct hook_run run = {};					\
										\
		RUN(on, KERNELLATENCY, RX, kernellatency_rx(btf, skb, &run));	\
		RUN(on, DNS, RX, dns_rx(btf, frags, skb, &run));				\
	} while (0)

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(datapath_rx_btf, struct sk_buff *skb)
{
	RX(true, true, skb);
	return 0;
}

/* The same where the kernel refuses a dynptr over the skb here (dns.bpf.h). */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(datapath_rx_linear_btf, struct sk_buff *skb)
{
	RX(true, false, skb);
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int datapath_rx_tp(struct trace_event_raw_net_dev_template *ctx)
{
	RX(false, false, ctx->skbaddr);
	return 0;
}

SEC("fentry/ip_rcv")
int BPF_PROG(datapath_rx_fentry, struct sk_buff *skb)
{
	RX(true, false, skb);
	return 0;
}

SEC("kprobe/ip_rcv")
int BPF_KPROBE(datapath_rx_kprobe, struct sk_buff *skb)
{
	RX(false, false, skb);
	return 0;
}

/* hook "deliver": a packet reaches its established TCP socket. */

SEC("tp_btf/tcp_probe")
int BPF_PROG(datapath_deliver_btf, struct sock *sk, const struct sk_buff *skb)
{
	__u32 on = datapath_enabled;
	struct hook_run run = {};

	RUN(on, KERNELLATENCY, DELIVER, kernellatency_deliver(true, sk, skb, &run));
	RUN(on, TCPRTT, DELIVER, tcprtt_deliver(true, sk));
	return 0;
}

SEC("tracepoint/tcp/tcp_probe")
int datapath_deliver_tp(struct trace_event_raw_tcp_probe *ctx)
{
	__u32 on = datapath_enabled;
	struct hook_run run = {};

	RUN(on, KERNELLATENCY, DELIVER,
	    kernellatency_deliver(false, ctx->skaddr, ctx->skbaddr, &run));
	RUN(on, TCPRTT, DELIVER, tcprtt_deliver(false, ctx->skaddr));
	return 0;
}

SEC("fentry/tcp_rcv_established")
int BPF_PROG(datapath_deliver_fentry, struct sock *sk, struct sk_buff *skb)
{
	__u32 on = datapath_enabled;
	struct hook_run run = {};

	RUN(on, KERNELLATENCY, DELIVER, kernellatency_deliver(true, sk, skb, &run));
	RUN(on, TCPRTT, DELIVER, tcprtt_deliver(true, sk));
	return 0;
}

SEC("kprobe/tcp_rcv_established")
int BPF_KPROBE(datapath_deliver_kprobe, struct sock *sk, struct sk_buff *skb)
{
	__u32 on = datapath_enabled;
	struct hook_run run = {};

	RUN(on, KERNELLATENCY, DELIVER, kernellatency_deliver(false, sk, skb, &run));
	RUN(on, TCPRTT, DELIVER, tcprtt_deliver(false, sk));
	return 0;
}

/* hook "start": the qdisc releases a packet to the driver. */

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(datapath_start_btf, const struct sk_buff *skb, const struct net_device *dev)
{
	struct hook_run run = {};

	RUN(datapath_enabled, NETIFTXLAT, START, netiftxlat_start(true, skb, dev, &run));
	return 0;
}

SEC("tracepoint/net/net_dev_start_xmit")
int datapath_start_tp(struct trace_event_raw_net_dev_start_xmit *ctx)
{
	struct hook_run run = {};
	const struct sk_buff *skb = ctx->skbaddr;

	RUN(datapath_enabled, NETIFTXLAT, START,
	    netiftxlat_start(false, skb, BPF_CORE_READ(skb, dev), &run));
	return 0;
}

/* hook "xmit": the driver took the packet. */

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(datapath_xmit_btf, struct sk_buff *skb, int rc, struct net_device *dev)
{
	struct hook_run run = {};

	RUN(datapath_enabled, NETIFTXLAT, XMIT, netiftxlat_xmit(true, skb, rc, dev, &run));
	return 0;
}

SEC("tracepoint/net/net_dev_xmit")
int datapath_xmit_tp(struct trace_event_raw_net_dev_xmit *ctx)
{
	struct hook_run run = {};

	RUN(datapath_enabled, NETIFTXLAT, XMIT,
	    netiftxlat_xmit(false, ctx->skbaddr, ctx->rc, NULL, &run));
	return 0;
}

/* hook "ready": data was queued on a socket. */

SEC("tp_btf/sk_data_ready")
int BPF_PROG(datapath_ready_btf, const struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, READY, socketlatency_ready(true, sk, &run));
	return 0;
}

SEC("tracepoint/sock/sk_data_ready")
int datapath_ready_tp(struct trace_event_raw_sk_data_ready *ctx)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, READY, socketlatency_ready(false, ctx->skaddr, &run));
	return 0;
}

SEC("fentry/sock_def_readable")
int BPF_PROG(datapath_ready_fentry, struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, READY, socketlatency_ready(true, sk, &run));
	return 0;
}

SEC("kprobe/sock_def_readable")
int BPF_KPROBE(datapath_ready_kprobe, struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, READY, socketlatency_ready(false, sk, &run));
	return 0;
}

/* hook "recv": an application read from a socket. */

SEC("tp_btf/sock_recv_length")
int BPF_PROG(datapath_recv_btf, struct sock *sk, int ret, int flags)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, RECV, socketlatency_recv(true, sk, ret, flags, &run));
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int datapath_recv_tp(struct trace_event_raw_sock_msg_length *ctx)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, RECV,
	    socketlatency_recv(false, ctx->sk, ctx->ret, ctx->flags, &run));
	return 0;
}

SEC("fentry/tcp_cleanup_rbuf")
int BPF_PROG(datapath_recv_fentry, struct sock *sk, int copied)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, RECV, socketlatency_recv(true, sk, copied, 0, &run));
	return 0;
}

SEC("kprobe/tcp_cleanup_rbuf")
int BPF_KPROBE(datapath_recv_kprobe, struct sock *sk, int copied)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, RECV, socketlatency_recv(false, sk, copied, 0, &run));
	return 0;
}

/* hook "sendmsg": an application writes to a TCP socket. */

SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(datapath_sendmsg_btf, const struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, SENDMSG, socketlatency_sendmsg(true, sk, &run));
	return 0;
}

SEC("fentry/tcp_sendmsg_locked")
int BPF_PROG(datapath_sendmsg_fentry, struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, SENDMSG, socketlatency_sendmsg(true, sk, &run));
	return 0;
}

SEC("kprobe/tcp_sendmsg_locked")
int BPF_KPROBE(datapath_sendmsg_kprobe, struct sock *sk)
{
	struct hook_run run = {};

	RUN(datapath_enabled, SOCKETLATENCY, SENDMSG, socketlatency_sendmsg(false, sk, &run));
	return 0;
}

/* hook "state": a socket changes TCP state. */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(datapath_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	__u32 on = datapath_enabled;

	RUN(on, SOCKETLATENCY, STATE, socketlatency_state(sk, newstate));
	RUN(on, TCPCONNECT, STATE, tcpconnect_state(true, sk, oldstate, newstate));
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int datapath_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u32 on = datapath_enabled;

	RUN(on, SOCKETLATENCY, STATE, socketlatency_state(ctx->skaddr, ctx->newstate));
	RUN(on, TCPCONNECT, STATE,
	    tcpconnect_state(false, ctx->skaddr, ctx->oldstate, ctx->newstate));
	return 0;
}

SEC("fentry/tcp_set_state")
int BPF_PROG(datapath_state_fentry, struct sock *sk, int state)
{
	__u32 on = datapath_enabled;

	RUN(on, SOCKETLATENCY, STATE, socketlatency_state(sk, state));
	RUN(on, TCPCONNECT, STATE,
	    tcpconnect_state(true, sk, sk->__sk_common.skc_state, state));
	return 0;
}

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(datapath_state_kprobe, struct sock *sk, int state)
{
	__u32 on = datapath_enabled;

	RUN(on, SOCKETLATENCY, STATE, socketlatency_state(sk, state));
	RUN(on, TCPCONNECT, STATE,
	    tcpconnect_state(false, sk, BPF_CORE_READ(sk, __sk_common.skc_state), state));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
