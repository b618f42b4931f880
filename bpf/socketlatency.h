/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * socketlatency: the kernel <-> user-space contract of socketlatency.bpf.h (in the shared object
 * datapath.bpf.c): how long TCP data waits in a socket, per (namespace, direction), as a log2
 * histogram (latency.h) plus upstream's two fixed thresholds, and, when events are on, each wait
 * above the event threshold. Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __SOCKETLATENCY_H
#define __SOCKETLATENCY_H

#include "events.h"
#include "tuple.h"
#include "latency.h"

#define SOCKETLATENCY_MAX_HISTS 8192     /* (namespace, direction) keys */
#define SOCKETLATENCY_MAX_INFLIGHT 65536 /* (socket, direction) waits being timed */
#define SOCKETLATENCY_COMM_LEN 16
/* Upstream's counters: read1ms/write1ms in latency_hist.slow[0], read100ms/write100ms in slow[1]. */
#define SOCKETLATENCY_SLOW0_NS (1ULL * 1000 * 1000)
#define SOCKETLATENCY_SLOW1_NS (100ULL * 1000 * 1000)

/* socketlatency_key.direction, and event_header.type (upstream SOCKETLAT_READSLOW / _SENDSLOW). */
enum socketlatency_direction {
	SOCKETLATENCY_READ = 1,  /* data in the receive queue, waiting for the application */
	SOCKETLATENCY_WRITE = 2, /* data the application wrote, waiting to leave for the device */
};

/* Key of the "hists" map (value: struct latency_hist). */
struct socketlatency_key {
	__u32 netns;        /* the socket's namespace */
	__u32 netns_cookie; /* and its never-reused id (netns.bpf.h net_id()) */
	__u32 direction;    /* enum socketlatency_direction */
};

/*
 * A ring-buffer record: one wait longer than the event threshold. hdr.type is the direction,
 * hdr.aux the socket's TCP state. Source = the local end of the connection, destination = the
 * peer. pid and comm: READ, the task that read; WRITE, the task whose write started the wait.
 */
struct socketlatency_event {
	struct event_header hdr;
	struct flow_tuple tuple;
	__u64 latency_ns;
	__u32 pid; /* tgid */
	__u32 pad;
	char comm[SOCKETLATENCY_COMM_LEN];
};

#endif /* __SOCKETLATENCY_H */
