/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * datapath: the kernel <-> user-space contract of the shared object datapath.bpf.c (its probes'
 * own types are in <probe>.h). Mirrored in otel_kubeskoop/bpf/generated/datapath.py (make);
 * otel_kubeskoop/bpf/shared.py derives each probe's bit, hooks and cost slots from these names.
 */
#ifndef __DATAPATH_H
#define __DATAPATH_H

/* A probe's bit in datapath_enabled: 1 << DATAPATH_<PROBE>; <probe> is the probe's name. */
enum datapath_probe {
	DATAPATH_PACKETLOSS = 0,
	DATAPATH_KERNELLATENCY = 1,
	DATAPATH_NETIFTXLAT = 2,
	DATAPATH_SOCKETLATENCY = 3,
	DATAPATH_TCPRTT = 4,
	DATAPATH_TCPCONNECT = 5,
	DATAPATH_DNS = 6,
	DATAPATH__PROBES = 7,
};

/*
 * DATAPATH_<PROBE>_<HOOK>: the probe runs on the hook (the programs datapath_<hook>_<kind>), and
 * its cost there is datapath_costs[this] while bpfStats is on.
 */
enum datapath_slot {
	DATAPATH_PACKETLOSS_FREE = 0,
	DATAPATH_KERNELLATENCY_RX = 1,
	DATAPATH_KERNELLATENCY_DELIVER = 2,
	DATAPATH_KERNELLATENCY_QUEUE = 3,
	DATAPATH_KERNELLATENCY_FREE = 4,
	DATAPATH_KERNELLATENCY_CONSUME = 5,
	DATAPATH_NETIFTXLAT_QUEUE = 6,
	DATAPATH_NETIFTXLAT_START = 7,
	DATAPATH_NETIFTXLAT_XMIT = 8,
	DATAPATH_NETIFTXLAT_FREE = 9,
	DATAPATH_NETIFTXLAT_CONSUME = 10,
	DATAPATH_SOCKETLATENCY_READY = 11,
	DATAPATH_SOCKETLATENCY_RECV = 12,
	DATAPATH_SOCKETLATENCY_SENDMSG = 13,
	DATAPATH_SOCKETLATENCY_QUEUE = 14,
	DATAPATH_SOCKETLATENCY_STATE = 15,
	DATAPATH_TCPRTT_DELIVER = 16,
	DATAPATH_TCPCONNECT_STATE = 17,
	DATAPATH_TCPCONNECT_FREE = 18,
	DATAPATH_DNS_QUEUE = 19,
	DATAPATH_DNS_RX = 20,
	DATAPATH__SLOTS = 21,
};

/* What one probe cost on one hook, per CPU: runs of its handler and their time. */
struct datapath_cost {
	__u64 runs;
	__u64 ns;
};

#endif /* __DATAPATH_H */
