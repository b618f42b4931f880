/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel <-> user-space contract: the addresses of a packet or a connection, embedded in the
 * ring-buffer records of packetloss, tcpreset and tcpretrans. Types only; mirrored in
 * otel_kubeskoop/bpf/generated/common.py (FlowTuple). Include vmlinux.h (BPF) first for __u16 & co.
 */
#ifndef __OTEL_KUBESKOOP_TUPLE_H
#define __OTEL_KUBESKOOP_TUPLE_H

struct flow_tuple {
	__u8 saddr[16];  /* source address, network byte order; IPv4 in the first 4 bytes */
	__u8 daddr[16];  /* destination address */
	__u16 family;    /* AF_INET or AF_INET6; 0 when the packet is not IP (or unknown) */
	__u16 protocol;  /* IP protocol (IPPROTO_TCP...); 0 when unknown */
	__u16 sport;     /* source port, host byte order; 0 without ports */
	__u16 dport;     /* destination port */
};

#endif /* __OTEL_KUBESKOOP_TUPLE_H */
