// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * biolatency: block request latency per (namespace of the issuing task, disk, operation); see
 * biolatency.h.
 *
 *   block:block_rq_issue -> block:block_rq_complete: from the request's dispatch to the driver
 *   (blk_mq_start_request()) to its first completion (blk_update_request()): the device's
 *   service time, without the time in the I/O scheduler or in a plug. A request completed in
 *   parts is counted once, at its first part; a requeued one from its last issue.
 *
 * Attach plans: the programs at the end of this file (bpf/README.md); the functions of the
 * fentry/kprobe candidates are where the tracepoints are.
 * Upstream used kprobes on blk_account_io_start/blk_account_io_done, which 6.x kernels inline
 * (upstream issue #293); Linux 6.5 put tracepoints there (block:block_io_start/_done), but the
 * interval asked for here is the device's, issue to complete.
 *
 * Keys: the request pointer where the hook has it (tp_btf, fentry, kprobe); the classic
 * tracepoints give (dev, sector) instead. user space makes both hooks use the same kind.
 *
 * Attribution: the namespace, pid and comm of the task current at issue, which for direct
 * dispatch (O_DIRECT, a plug flushed by the submitter, no I/O scheduler queueing) is the task
 * that submitted the I/O. Requests dispatched later by a kernel thread (kblockd running the
 * queue, writeback flushers, journal threads, the loop/dm/md workers of stacked devices) carry
 * that thread (flag BIOLATENCY_KTHREAD) and the host namespace: they cannot be attributed to a
 * pod from here. A dispatch from interrupt context would carry the interrupted task.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "core_fixes.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "biolatency.h"

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#define REQ_OP_MASK 0xff      /* (1 << REQ_OP_BITS) - 1, include/linux/blk_types.h */
#define MINORBITS 20          /* include/linux/kdev_t.h */
#ifndef KERNEL_VERSION
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))
#endif

extern int LINUX_KERNEL_VERSION __kconfig;

/* Settings (set between open and load). */
const volatile bool targ_emit = false;                           /* send events */
const volatile __u64 targ_threshold_ns = 10 * LATENCY_NSEC_PER_MSEC; /* events above this */

DECLARE_LATENCY_HISTS(struct biolatency_key, struct latency_hist, BIOLATENCY_MAX_HISTS);

struct rq_key {
	__u64 id; /* the struct request pointer, or (classic tracepoints) the sector */
	__u32 dev; /* 0 with a request pointer, else the dev_t */
	__u32 pad;
};

struct rq_start {
	__u64 issued_ns;
	__u64 sector;
	struct netns_id netns;
	__u32 dev;
	__u32 op;
	__u32 bytes;
	__u32 pid;
	__u32 flags;
	char comm[16];
};

DECLARE_INFLIGHT(requests, struct rq_key, struct rq_start, BIOLATENCY_MAX_INFLIGHT);

/* A start record is too big for comfort on the BPF stack next to the rest: build it here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rq_start);
} scratch SEC(".maps");

BTF_EXPORT(struct biolatency_event, biolatency_event);
BTF_EXPORT(enum biolatency_op, biolatency_op);
BTF_EXPORT(enum biolatency_event_type, biolatency_event_type);
BTF_EXPORT(enum biolatency_flag, biolatency_flag);
BTF_EXPORT(struct latency_hist, latency_hist);
BTF_EXPORT(enum inflight_stat, inflight_stat);

static __always_inline __u32 fold_op(__u32 op)
{
	switch (op) {
	case 0: /* REQ_OP_READ */
		return BIOLATENCY_OP_READ;
	case 1: /* REQ_OP_WRITE */
		return BIOLATENCY_OP_WRITE;
	case 2: /* REQ_OP_FLUSH */
		return BIOLATENCY_OP_FLUSH;
	case 3: /* REQ_OP_DISCARD */
		return BIOLATENCY_OP_DISCARD;
	default:
		return BIOLATENCY_OP_OTHER;
	}
}

/* The operation from the tracepoint's rwbs text (blk_fill_rwbs(): an optional 'F' for a
 * preflush, then W, D, R, F (a flush alone), N...). */
static __always_inline __u32 rwbs_op(const struct trace_event_raw_block_rq *ctx)
{
	char rwbs[2] = {};
	char c0, c1;

	bpf_core_read(rwbs, sizeof(rwbs), &ctx->rwbs);
	c0 = rwbs[0];
	c1 = rwbs[1];

	if (c0 == 'F') {
		if (c1 == 'W')
			return BIOLATENCY_OP_WRITE;
		return BIOLATENCY_OP_FLUSH;
	}
	if (c0 == 'W')
		return BIOLATENCY_OP_WRITE;
	if (c0 == 'R')
		return BIOLATENCY_OP_READ;
	if (c0 == 'D')
		return BIOLATENCY_OP_DISCARD;
	return BIOLATENCY_OP_OTHER;
}

static __always_inline struct rq_start *start_record(void)
{
	__u32 zero = 0;
	struct rq_start *s = bpf_map_lookup_elem(&scratch, &zero);
	struct task_struct *task;

	if (!s)
		return NULL;
	task = (struct task_struct *)bpf_get_current_task();
	s->issued_ns = bpf_ktime_get_ns();
	s->netns = net_id(false, BPF_CORE_READ(task, nsproxy, net_ns));
	s->pid = bpf_get_current_pid_tgid() >> 32;
	s->flags = (BPF_CORE_READ(task, flags) & PF_KTHREAD) ? BIOLATENCY_KTHREAD : 0;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	return s;
}

static __always_inline int issue_rq(const struct request *rq)
{
	struct rq_key key = {};
	struct rq_start *s;
	struct gendisk *disk;

	if (!rq)
		return 0;
	s = start_record();
	if (!s)
		return 0;
	disk = core_rq_disk(rq);
	s->dev = disk ? (BPF_CORE_READ(disk, major) << MINORBITS) | BPF_CORE_READ(disk, first_minor) : 0;
	s->op = fold_op(BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK);
	s->bytes = BPF_CORE_READ(rq, __data_len);
	s->sector = BPF_CORE_READ(rq, __sector);
	key.id = (__u64)rq;
	requests_start(&key, s);
	return 0;
}

static __always_inline int issue_tp(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key key = {};
	struct rq_start *s = start_record();

	if (!s)
		return 0;
	s->dev = ctx->dev;
	s->sector = ctx->sector;
	s->bytes = ctx->bytes;
	s->op = rwbs_op(ctx);
	key.id = s->sector;
	key.dev = s->dev;
	requests_start(&key, s);
	return 0;
}

static __always_inline int complete(const struct rq_key *key, bool failed)
{
	struct biolatency_key hkey = {};
	struct biolatency_event *e;
	struct latency_hist *h;
	struct rq_start start, *s = &start;
	__u64 now, delta;

	if (!requests_get(key, s)) {
		inflight_count(INFLIGHT_UNMATCHED);
		return 0;
	}
	requests_end(key);
	now = bpf_ktime_get_ns();
	delta = now > s->issued_ns ? now - s->issued_ns : 0;
	hkey.netns = s->netns.inum;
	hkey.netns_cookie = s->netns.cookie;
	hkey.dev = s->dev;
	hkey.op = s->op;
	h = hists_lookup(&hkey);
	if (h)
		latency_add(h, delta, 0, 0);
	if (targ_emit && delta > targ_threshold_ns) {
		e = event_reserve(struct biolatency_event, s->netns.inum, BIOLAT_10MS, 0);
		if (e) {
			e->latency_ns = delta;
			e->sector = s->sector;
			e->dev = s->dev;
			e->op = s->op;
			e->bytes = s->bytes;
			e->pid = s->pid;
			e->flags = s->flags | (failed ? BIOLATENCY_FAILED : 0);
			__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
			event_submit(e);
		}
	}
	return 0;
}

static __always_inline int complete_rq(const struct request *rq, bool failed)
{
	struct rq_key key = {};

	if (!rq)
		return 0;
	key.id = (__u64)rq;
	return complete(&key, failed);
}

/* hook "issue" */

SEC("tp_btf/block_rq_issue")
int BPF_PROG(biolatency_issue_btf)
{
	/* Linux 5.11 (commit a54895fa, "block: remove the request_queue to argument request
	 * based tracepoints") dropped the queue argument that came first. */
	if (LINUX_KERNEL_VERSION >= KERNEL_VERSION(5, 11, 0))
		return issue_rq((const struct request *)ctx[0]);
	return issue_rq((const struct request *)ctx[1]);
}

SEC("tracepoint/block/block_rq_issue")
int biolatency_issue_tp(struct trace_event_raw_block_rq *ctx)
{
	return issue_tp(ctx);
}

SEC("fentry/blk_mq_start_request")
int BPF_PROG(biolatency_issue_fentry, struct request *rq)
{
	return issue_rq(rq);
}

SEC("kprobe/blk_mq_start_request")
int BPF_KPROBE(biolatency_issue_kprobe, struct request *rq)
{
	return issue_rq(rq);
}

/* hook "complete" */

SEC("tp_btf/block_rq_complete")
int BPF_PROG(biolatency_complete_btf, struct request *rq, int error)
{
	return complete_rq(rq, error != 0);
}

SEC("tracepoint/block/block_rq_complete")
int biolatency_complete_tp(void *ctx)
{
	struct rq_key key = {};
	int error = 0;

	tp_block_rq_complete_args(ctx, &key.dev, &key.id, &error);
	return complete(&key, error != 0);
}

SEC("fentry/blk_update_request")
int BPF_PROG(biolatency_complete_fentry, struct request *rq, blk_status_t error)
{
	return complete_rq(rq, error != 0);
}

SEC("kprobe/blk_update_request")
int BPF_KPROBE(biolatency_complete_kprobe, struct request *rq, blk_status_t error)
{
	return complete_rq(rq, error != 0);
}

char LICENSE[] SEC("license") = "GPL";
