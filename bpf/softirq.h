/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * softirq: the kernel <-> user-space contract of softirq.bpf.c: how long a
 * raised softirq waits before it runs, and how long it runs, per (softirq type, CPU). Node scope:
 * a softirq belongs to no pod. Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __SOFTIRQ_H
#define __SOFTIRQ_H

#include "events.h"
#include "latency.h"

/* NR_SOFTIRQS: HI, TIMER, NET_TX, NET_RX, BLOCK, IRQ_POLL, TASKLET, SCHED, HRTIMER, RCU. */
#define SOFTIRQ_VECS 10
/* (type, CPU, stage) slots by default (a power of two, above every type on 256 CPUs); user space
 * sizes it to the node. */
#define SOFTIRQ_MAX_HISTS 8192
/* The upstream counters: latency_hist.slow[0] (>10 ms, *slow) and slow[1] (>100 ms, *slow100ms). */
#define SOFTIRQ_SLOW_NS (10ULL * 1000 * 1000)
#define SOFTIRQ_SLOW100_NS (100ULL * 1000 * 1000)

/* softirq_key.stage */
enum softirq_stage {
	SOFTIRQ_STAGE_SCHED = 1,  /* irq:softirq_raise -> irq:softirq_entry: waiting to run */
	SOFTIRQ_STAGE_EXCUTE = 2, /* irq:softirq_entry -> irq:softirq_exit: running (upstream's spelling) */
};

/* event_header.type: upstream's event types. */
enum softirq_event_type {
	SOFTIRQ_SCHED_SLOW = 1,   /* waited more than the threshold (and at most 100 ms) */
	SOFTIRQ_SCHED_100MS = 2,  /* waited more than 100 ms (and more than the threshold) */
	SOFTIRQ_EXCUTE_SLOW = 3,  /* ran more than the threshold (and at most 100 ms) */
	SOFTIRQ_EXCUTE_100MS = 4, /* ran more than 100 ms (and more than the threshold) */
};

/* Key of the "hists" map (value: struct latency_hist). */
struct softirq_key {
	__u32 vec;   /* softirq number, 0..SOFTIRQ_VECS-1 */
	__u32 cpu;
	__u32 stage; /* enum softirq_stage */
};

/* A ring-buffer record: one slow softirq. hdr.netns is 0 (node scope). */
struct softirq_event {
	struct event_header hdr;
	__u64 latency_ns;
	__u32 vec;
	__u32 cpu;
	__u32 stage; /* enum softirq_stage */
	__u32 pid;   /* the task the softirq interrupted, or ksoftirqd; 0 for the idle task */
	char comm[16];
};

#endif /* __SOFTIRQ_H */
