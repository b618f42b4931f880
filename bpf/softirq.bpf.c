// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * softirq: softirq scheduling delay and run time per (softirq type, CPU); see softirq.h.
 *
 *   SCHED   irq:softirq_raise -> irq:softirq_entry: from the first raise of a softirq on a CPU
 *           (its pending bit set; raises while it is pending do not move the start) to its
 *           handler starting on that CPU (pending bits are per CPU, so both are on one CPU);
 *   EXCUTE  irq:softirq_entry -> irq:softirq_exit: the handler's run.
 *
 * Attach plans: the programs at the end of this file (bpf/README.md). No function alternatives: __raise_softirq_irqoff() and handle_softirqs() are where these
 * tracepoints are, and the handlers differ per type.
 *
 * In flight: one slot per (CPU, type) in a per-CPU array, so nothing can leak or be evicted: a
 * softirq that is pending is always eventually run on its CPU, and a softirq does not preempt
 * another on the same CPU. Only the types in targ_vec_mask (the softirq-types argument) are
 * measured.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "softirq.h"

/* Settings (set between open and load). */
const volatile __u32 targ_vec_mask = 1 << 3;                  /* bit per type; default NET_RX */
const volatile bool targ_emit = false;                        /* send events */
const volatile __u64 targ_threshold_ns = SOFTIRQ_SLOW_NS;     /* events above this */

DECLARE_LATENCY_HISTS(struct softirq_key, struct latency_hist, SOFTIRQ_MAX_HISTS);

/* Slots indexed by vec & SLOT_MASK (after barrier_var(), so that clang keeps the mask), a
 * power of two the verifier can bound. */
#define SLOTS 16
#define SLOT_MASK (SLOTS - 1)

struct softirq_cpu {
	__u64 raised_ns[SLOTS];  /* first raise while not pending; 0: none */
	__u64 entered_ns[SLOTS]; /* handler entry; 0: not running */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct softirq_cpu);
} cpus SEC(".maps");

BTF_EXPORT(struct softirq_event, softirq_event);
BTF_EXPORT(enum softirq_stage, softirq_stage);
BTF_EXPORT(enum softirq_event_type, softirq_event_type);
BTF_EXPORT(struct latency_hist, latency_hist);

static __always_inline struct softirq_cpu *this_cpu(__u32 vec)
{
	__u32 zero = 0;

	if (vec >= SOFTIRQ_VECS || !(targ_vec_mask & (1U << vec)))
		return NULL;
	return bpf_map_lookup_elem(&cpus, &zero);
}

static __always_inline void measure(__u32 vec, __u32 stage, __u64 delta)
{
	struct softirq_key key = {};
	struct latency_hist *h;
	struct softirq_event *e;
	__u32 type;

	key.vec = vec;
	key.cpu = bpf_get_smp_processor_id();
	key.stage = stage;
	h = hists_lookup(&key);
	if (h)
		latency_add_this_cpu(h, delta, SOFTIRQ_SLOW_NS, SOFTIRQ_SLOW100_NS);
	if (!targ_emit || delta <= targ_threshold_ns)
		return;
	if (stage == SOFTIRQ_STAGE_SCHED)
		type = delta > SOFTIRQ_SLOW100_NS ? SOFTIRQ_SCHED_100MS : SOFTIRQ_SCHED_SLOW;
	else
		type = delta > SOFTIRQ_SLOW100_NS ? SOFTIRQ_EXCUTE_100MS : SOFTIRQ_EXCUTE_SLOW;
	e = event_reserve(struct softirq_event, 0, type, 0);
	if (!e)
		return;
	e->latency_ns = delta;
	e->vec = vec;
	e->cpu = key.cpu;
	e->stage = stage;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	event_submit(e);
}

static __always_inline int handle_raise(__u32 vec)
{
	struct softirq_cpu *c = this_cpu(vec);

	if (!c)
		return 0;
	barrier_var(vec);
	vec &= SLOT_MASK;
	if (!c->raised_ns[vec])
		c->raised_ns[vec] = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int handle_entry(__u32 vec)
{
	struct softirq_cpu *c = this_cpu(vec);
	__u64 now, raised;

	if (!c)
		return 0;
	barrier_var(vec);
	vec &= SLOT_MASK;
	now = bpf_ktime_get_ns();
	raised = c->raised_ns[vec];
	c->raised_ns[vec] = 0; /* the kernel cleared the pending bits before running handlers */
	c->entered_ns[vec] = now;
	if (raised && now >= raised)
		measure(vec, SOFTIRQ_STAGE_SCHED, now - raised);
	return 0;
}

static __always_inline int handle_exit(__u32 vec)
{
	struct softirq_cpu *c = this_cpu(vec);
	__u64 now, entered;

	if (!c)
		return 0;
	barrier_var(vec);
	vec &= SLOT_MASK;
	entered = c->entered_ns[vec];
	if (!entered) /* entered before we attached */
		return 0;
	c->entered_ns[vec] = 0;
	now = bpf_ktime_get_ns();
	if (now >= entered)
		measure(vec, SOFTIRQ_STAGE_EXCUTE, now - entered);
	return 0;
}

/* hook "raise" */

SEC("tp_btf/softirq_raise")
int BPF_PROG(softirq_raise_btf, unsigned int vec)
{
	return handle_raise(vec);
}

SEC("tracepoint/irq/softirq_raise")
int softirq_raise_tp(struct trace_event_raw_softirq *ctx)
{
	return handle_raise(ctx->vec);
}

/* hook "entry" */

SEC("tp_btf/softirq_entry")
int BPF_PROG(softirq_entry_btf, unsigned int vec)
{
	return handle_entry(vec);
}

SEC("tracepoint/irq/softirq_entry")
int softirq_entry_tp(struct trace_event_raw_softirq *ctx)
{
	return handle_entry(ctx->vec);
}

/* hook "exit" */

SEC("tp_btf/softirq_exit")
int BPF_PROG(softirq_exit_btf, unsigned int vec)
{
	return handle_exit(vec);
}

SEC("tracepoint/irq/softirq_exit")
int softirq_exit_tp(struct trace_event_raw_softirq *ctx)
{
	return handle_exit(ctx->vec);
}

char LICENSE[] SEC("license") = "GPL";
