/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * virtcmdlatency: the kernel <-> user-space contract of virtcmdlatency.bpf.c:
 * how long virtio-net control commands take, per (namespace, interface, command class).
 * Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __VIRTCMDLATENCY_H
#define __VIRTCMDLATENCY_H

#include "events.h"
#include "latency.h"

#define VIRTCMDLATENCY_MAX_HISTS 1024
#define VIRTCMDLATENCY_MAX_INFLIGHT 1024 /* threads inside the function */
#define VIRTCMDLATENCY_IFNAMSIZ 16
/* The upstream counters: latency_hist.slow[0] (>10 ms, latency), slow[1] (>100 ms, latency100ms). */
#define VIRTCMDLATENCY_SLOW_NS (10ULL * 1000 * 1000)
#define VIRTCMDLATENCY_SLOW100_NS (100ULL * 1000 * 1000)

/* event_header.type: upstream's event types (sic). */
enum virtcmdlatency_event_type {
	VIRTCMDEXCUTE = 1,       /* slower than the threshold (and at most 100 ms) */
	VIRTCMDEXCUTE_100MS = 2, /* slower than 100 ms (and than the threshold) */
};

/* Key of the "hists" map. */
struct virtcmdlatency_key {
	__u32 netns;        /* the virtio-net device's namespace: inode */
	__u32 netns_cookie; /* and never-reused id (netns.bpf.h net_id()) */
	__u32 ifindex;
	__u32 cls;          /* VIRTIO_NET_CTRL_* class (include/uapi/linux/virtio_net.h) */
};

/* Value of the "hists" map: the histogram, and the device's name when the key was created. */
struct virtcmdlatency_value {
	struct latency_hist hist;
	char ifname[VIRTCMDLATENCY_IFNAMSIZ];
};

/* A ring-buffer record: one slow control command. */
struct virtcmdlatency_event {
	struct event_header hdr;
	__u64 latency_ns;
	__u32 pid; /* tgid of the task that sent the command */
	__u32 cpu; /* where the command returned */
	__u32 ifindex;
	__u8 cls;
	__u8 cmd; /* VIRTIO_NET_CTRL_<class>_* command */
	__u16 pad;
	char ifname[VIRTCMDLATENCY_IFNAMSIZ];
	char comm[16];
};

#endif /* __VIRTCMDLATENCY_H */
