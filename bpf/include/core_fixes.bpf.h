/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel-version differences, one place (after libbpf-tools' core_fixes.bpf.h).
 * Each shim names the kernel commit that made the difference; the vmlinux.h types are those of
 * the newest kernel, "___old" flavours describe what came before, and bpf_core_type_exists() /
 * bpf_core_field_exists() pick at load time (libbpf drops the branch that does not apply).
 *
 * Only classic tracepoints need these: a BTF tracepoint (tp_btf) whose arguments changed fails to
 * load on the older kernel (the verifier refuses to read an argument the tracepoint lacks), and
 * the loader then falls back to the classic tracepoint, whose record layout these shims read.
 */
#ifndef __OTEL_KUBESKOOP_CORE_FIXES_BPF_H
#define __OTEL_KUBESKOOP_CORE_FIXES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/* A reset or drop reason the kernel did not give (older kernels, receive side). */
#define CORE_REASON_NONE 0xffffffffU

/*
 * tcp:tcp_send_reset and tcp:tcp_retransmit_skb used the shared class tcp_event_sk_skb until
 * Linux 6.10 and 6.17:
 * - commit 19822a980e19 ("trace: tcp: fully support trace_tcp_send_reset", v6.10) gave
 *   tcp_send_reset its own record (trace_event_raw_tcp_send_reset) and made tcp_v4/v6_send_reset
 *   fire it for every socket, NULL included (before: full sockets only); commit b533fb9cf4f7
 *   ("rstreason: make it work in trace world", v6.10) added its "reason" (enum sk_rst_reason);
 * - "tcp: trace retransmit failures in tcp_retransmit_skb" (v6.17) gave tcp_retransmit_skb its
 *   own record with an "err" field, and made it fire for failed retransmissions too.
 * skbaddr and skaddr kept their offsets throughout.
 */
struct trace_event_raw_tcp_event_sk_skb___old {
	const void *skbaddr;
	const void *skaddr;
	int state;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_send_reset___new {
	const void *skbaddr;
	const void *skaddr;
	int state;
	enum sk_rst_reason reason;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_retransmit_skb___new {
	const void *skbaddr;
	const void *skaddr;
	int state;
	int err;
} __attribute__((preserve_access_index));

/* tcp:tcp_send_reset record: the socket (NULL for no socket), the packet (NULL for an active
 * reset) and the reason (CORE_REASON_NONE before 6.10). */
static __always_inline void tp_tcp_send_reset_args(void *ctx, const struct sock **sk,
						   const struct sk_buff **skb, __u32 *reason)
{
	if (bpf_core_type_exists(struct trace_event_raw_tcp_send_reset)) {
		struct trace_event_raw_tcp_send_reset___new *tp = ctx;

		*sk = tp->skaddr;
		*skb = tp->skbaddr;
		*reason = bpf_core_field_exists(tp->reason) ? (__u32)tp->reason : CORE_REASON_NONE;
	} else {
		struct trace_event_raw_tcp_event_sk_skb___old *tp = ctx;

		*sk = tp->skaddr;
		*skb = tp->skbaddr;
		*reason = CORE_REASON_NONE;
	}
}

/* tcp:tcp_retransmit_skb record: the socket, and the error (0 before 6.17, when the tracepoint
 * fired for successful retransmissions only). */
static __always_inline void tp_tcp_retransmit_skb_args(void *ctx, const struct sock **sk, int *err)
{
	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb)) {
		struct trace_event_raw_tcp_retransmit_skb___new *tp = ctx;

		*sk = tp->skaddr;
		*err = bpf_core_field_exists(tp->err) ? tp->err : 0;
	} else {
		struct trace_event_raw_tcp_event_sk_skb___old *tp = ctx;

		*sk = tp->skaddr;
		*err = 0;
	}
}

/*
 * The disk of a block request (biolatency). Commit d152c682f03c ("block: add an explicit ->disk
 * backpointer to the request_queue") added request_queue.disk, and commit f3fa33acca9f
 * ("block: remove the ->rq_disk field in struct request") removed request.rq_disk.
 */
struct request_queue___x {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct request___x {
	struct request_queue___x *q;
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *core_rq_disk(const void *request)
{
	const struct request___x *r = request;

	if (bpf_core_field_exists(r->rq_disk))
		return BPF_CORE_READ(r, rq_disk);
	return BPF_CORE_READ(r, q, disk);
}

/*
 * block:block_rq_complete's record. Commit d5869fdc189f ("block: introduce block_rq_error
 * tracepoint", v5.18) made it share a class with block_rq_error, so the record type became
 * trace_event_raw_block_rq_completion (was trace_event_raw_block_rq_complete); the fields kept
 * their names.
 */
struct trace_event_raw_block_rq_complete___x {
	dev_t dev;
	sector_t sector;
	int error;
} __attribute__((preserve_access_index));

struct trace_event_raw_block_rq_completion___x {
	dev_t dev;
	sector_t sector;
	int error;
} __attribute__((preserve_access_index));

static __always_inline void tp_block_rq_complete_args(void *ctx, __u32 *dev, __u64 *sector,
						      int *error)
{
	if (bpf_core_type_exists(struct trace_event_raw_block_rq_completion___x)) {
		struct trace_event_raw_block_rq_completion___x *tp = ctx;

		*dev = BPF_CORE_READ(tp, dev);
		*sector = BPF_CORE_READ(tp, sector);
		*error = BPF_CORE_READ(tp, error);
	} else {
		struct trace_event_raw_block_rq_complete___x *tp = ctx;

		*dev = BPF_CORE_READ(tp, dev);
		*sector = BPF_CORE_READ(tp, sector);
		*error = BPF_CORE_READ(tp, error);
	}
}

#endif /* __OTEL_KUBESKOOP_CORE_FIXES_BPF_H */
