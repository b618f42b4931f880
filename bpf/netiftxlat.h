/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * netiftxlat: the kernel <-> user-space contract of netiftxlat.bpf.h (in the shared object
 * datapath.bpf.c): how long packets wait in the qdisc, and how long the driver takes to accept
 * them, per (namespace, interface). Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __NETIFTXLAT_H
#define __NETIFTXLAT_H

#include "events.h"
#include "tuple.h"
#include "latency.h"

#define NETIFTXLAT_MAX_HISTS 4096     /* (namespace, interface, stage) keys */
#define NETIFTXLAT_MAX_INFLIGHT 16384 /* packets in a qdisc: net_dev_queue to net_dev_start_xmit */
#define NETIFTXLAT_IFNAMSIZ 16
/* The upstream counters (qdiscslow100ms, netdevslow100ms): latency_hist.slow[0]. */
#define NETIFTXLAT_SLOW_NS (100ULL * 1000 * 1000)

/* netiftxlat_key.stage, and event_header.type (upstream NETIFTXLAT_QDISC / NETIFTXLAT_XMIT). */
enum netiftxlat_stage {
	NETIFTXLAT_QDISC = 1, /* net:net_dev_queue -> net:net_dev_start_xmit: waiting in the qdisc */
	NETIFTXLAT_XMIT = 2,  /* net:net_dev_start_xmit -> net:net_dev_xmit: in ndo_start_xmit */
};

/* Key of the "hists" map. */
struct netiftxlat_key {
	__u32 netns;        /* the device's namespace: inode */
	__u32 netns_cookie; /* and never-reused id (netns.bpf.h net_id()) */
	__u32 ifindex;      /* the device */
	__u32 stage;        /* enum netiftxlat_stage */
};

/* Value of the "hists" map: the histogram, and the device's name when the key was created. */
struct netiftxlat_value {
	struct latency_hist hist;
	char ifname[NETIFTXLAT_IFNAMSIZ];
};

/*
 * A ring-buffer record: one packet slower than the threshold in one stage (hdr.type). hdr.netns
 * is the device's namespace. qdisc_ns is the packet's qdisc wait (both stages); xmit_ns its time
 * in the driver (XMIT only, else 0). The tuple is read at net_dev_start_xmit, while the packet is
 * certainly alive: QDISC events have it, XMIT events not (the driver may have freed the packet
 * by the time net_dev_xmit fires), so their tuple is all zero.
 */
struct netiftxlat_event {
	struct event_header hdr;
	__u64 latency_ns; /* the stage's interval: qdisc_ns or xmit_ns */
	__u64 qdisc_ns;
	__u64 xmit_ns;
	struct flow_tuple tuple;
	__u32 ifindex;
	__u32 len;   /* skb->len at net_dev_queue, bytes */
	__s32 rc;    /* XMIT: ndo_start_xmit's return (0 NETDEV_TX_OK, 0x10 NETDEV_TX_BUSY) */
	__u32 cpu;
	char ifname[NETIFTXLAT_IFNAMSIZ];
};

#endif /* __NETIFTXLAT_H */
