/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * biolatency: the kernel <-> user-space contract of biolatency.bpf.c: how long
 * block requests take from issue to the device until completion, per (namespace of the issuing
 * task, disk, operation). Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __BIOLATENCY_H
#define __BIOLATENCY_H

#include "events.h"
#include "latency.h"

#define BIOLATENCY_MAX_HISTS 4096     /* (namespace, disk, operation) keys */
#define BIOLATENCY_MAX_INFLIGHT 16384 /* requests between issue and completion */

/* biolatency_key.op and biolatency_event.op: the request's REQ_OP_*, folded. */
enum biolatency_op {
	BIOLATENCY_OP_READ = 0,
	BIOLATENCY_OP_WRITE = 1,
	BIOLATENCY_OP_FLUSH = 2,
	BIOLATENCY_OP_DISCARD = 3,
	BIOLATENCY_OP_OTHER = 4, /* secure erase, write zeroes, zone and driver operations */
};

/* event_header.type: upstream's event type. */
enum biolatency_event_type {
	BIOLAT_10MS = 1, /* a request slower than the threshold (default 10 ms) */
};

/* biolatency_event.flags */
enum biolatency_flag {
	BIOLATENCY_KTHREAD = 1, /* issued by a kernel thread: the namespace is the host's */
	BIOLATENCY_FAILED = 2,  /* completed with an error */
};

/* Key of the "hists" map (value: struct latency_hist). */
struct biolatency_key {
	__u32 netns;        /* of the task that issued the request; 0 when it had none (exiting) */
	__u32 netns_cookie; /* the namespace's never-reused id (netns.bpf.h net_id()) */
	__u32 dev;          /* the disk, kernel dev_t: major << 20 | minor */
	__u32 op;           /* enum biolatency_op */
};

/* A ring-buffer record: one request slower than the threshold. hdr.netns as the key's. */
struct biolatency_event {
	struct event_header hdr;
	__u64 latency_ns;
	__u64 sector;
	__u32 dev;
	__u32 op;
	__u32 bytes;
	__u32 pid;   /* tgid of the issuing task */
	__u32 flags; /* enum biolatency_flag bits */
	char comm[16];
};

#endif /* __BIOLATENCY_H */
