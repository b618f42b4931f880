/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * What one run of a shared hook program (datapath.bpf.c) learns once for all the handlers it
 * calls (BPF side only). Each handler asks when it needs it, so a run whose handlers all filter
 * the packet out reads nothing: a clock read costs about 33 ns here and a header read is a
 * lookup into the packet (bpftool prog run, 2M runs, this machine), and on the hook "queue"
 * three probes would each read both.
 *
 *   hook_now(run)                       bpf_ktime_get_ns(), read by the first handler that asks
 *   hook_tcp_segment(btf, run, skb)     tcp_segment() of the run's packet, or NULL if not TCP
 *
 * The handlers of one run are a few hundred nanoseconds apart at most: a time taken for the
 * first serves the others' measurements.
 */
#ifndef __OTEL_KUBESKOOP_HOOKRUN_BPF_H
#define __OTEL_KUBESKOOP_HOOKRUN_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcpseg.bpf.h"

enum hook_seg_state {
	HOOK_SEG_UNREAD = 0,
	HOOK_SEG_TCP = 1,
	HOOK_SEG_OTHER = 2,
};

struct hook_run {
	__u64 now;     /* 0 until a handler asks */
	struct tcpseg seg;
	__u32 seg_state; /* enum hook_seg_state */
};

static __always_inline __u64 hook_now(struct hook_run *run)
{
	if (!run->now)
		run->now = bpf_ktime_get_ns();
	return run->now;
}

static __always_inline const struct tcpseg *hook_tcp_segment(bool btf, struct hook_run *run,
							     const struct sk_buff *skb)
{
	if (run->seg_state == HOOK_SEG_UNREAD)
		run->seg_state = tcp_segment(btf, skb, &run->seg) ? HOOK_SEG_TCP : HOOK_SEG_OTHER;
	return run->seg_state == HOOK_SEG_TCP ? &run->seg : NULL;
}

#endif /* __OTEL_KUBESKOOP_HOOKRUN_BPF_H */
