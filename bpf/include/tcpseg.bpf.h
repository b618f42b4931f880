/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The TCP segment an outgoing packet carries, read from its headers (BPF side only): used at
 * net:net_dev_queue by socketlatency (did new data leave the socket?) and kernellatency (only
 * data segments carry a fresh departure stamp). Reads as kread.bpf.h says (btf), header bytes
 * with KREAD_BYTES(), so it works from any program type and a bad pointer reads as "not TCP".
 */
#ifndef __OTEL_KUBESKOOP_TCPSEG_BPF_H
#define __OTEL_KUBESKOOP_TCPSEG_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kread.bpf.h"

#define TCPSEG_UNSET_HEADER 0xffff /* skb->network_header / transport_header not set */

struct tcpseg {
	__u32 seq;     /* sequence number of the first payload byte, host order */
	__u32 payload; /* payload bytes (all of a GSO packet's segments) */
};

/*
 * Whether skb, on its way out of the IP layer (network and transport headers set, skb->data at
 * the link-layer or network header), is a TCP segment; if so, its sequence number and payload.
 * IPv6 extension headers are not walked: TCP over IPv6 with extension headers reads as not TCP.
 */
static __always_inline bool tcp_segment(bool btf, const struct sk_buff *skb, struct tcpseg *seg)
{
	unsigned char *head, *data;
	__u8 ip[10], tcp[13], proto;
	__u16 nh, th;
	__u32 len, hdrs;
	__be32 seq;

	head = KREAD(btf, skb, head);
	data = KREAD(btf, skb, data);
	nh = KREAD(btf, skb, network_header);
	th = KREAD(btf, skb, transport_header);
	if (!head || nh == TCPSEG_UNSET_HEADER || th == TCPSEG_UNSET_HEADER || th <= nh)
		return false;
	/* One read per header: the IP version and protocol, then the TCP sequence and offset. */
	if (KREAD_BYTES(ip, head + nh, sizeof(ip)))
		return false;
	if ((ip[0] >> 4) == 4)
		proto = ip[9]; /* iphdr.protocol */
	else if ((ip[0] >> 4) == 6)
		proto = ip[6]; /* ipv6hdr.nexthdr */
	else
		return false;
	if (proto != IPPROTO_TCP || KREAD_BYTES(tcp, head + th, sizeof(tcp)))
		return false;
	len = KREAD(btf, skb, len);
	hdrs = (__u32)(head + th - data) + (tcp[12] >> 4) * 4; /* data offset: high 4 bits */
	__builtin_memcpy(&seq, &tcp[4], sizeof(seq));            /* tcphdr.seq */
	seg->seq = bpf_ntohl(seq);
	seg->payload = len > hdrs ? len - hdrs : 0;
	return true;
}

#endif /* __OTEL_KUBESKOOP_TCPSEG_BPF_H */
