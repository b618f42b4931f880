/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The TCP segment an outgoing packet carries, read from its headers (BPF side only): used at
 * net:net_dev_queue by socketlatency (did new data leave the socket?) and kernellatency (only
 * data segments carry a fresh departure stamp). CO-RE and probe reads only, so it works from any
 * program type and a bad pointer reads as "not TCP".
 */
#ifndef __OTEL_KUBESKOOP_TCPSEG_BPF_H
#define __OTEL_KUBESKOOP_TCPSEG_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

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
static __always_inline bool tcp_segment(const struct sk_buff *skb, struct tcpseg *seg)
{
	unsigned char *head, *data;
	__u16 nh, th;
	__u32 len, hdrs;
	__u8 first, proto, doff;
	__be32 seq;

	head = BPF_CORE_READ(skb, head);
	data = BPF_CORE_READ(skb, data);
	nh = BPF_CORE_READ(skb, network_header);
	th = BPF_CORE_READ(skb, transport_header);
	if (!head || nh == TCPSEG_UNSET_HEADER || th == TCPSEG_UNSET_HEADER || th <= nh)
		return false;
	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return false;
	if ((first >> 4) == 4) {
		if (bpf_probe_read_kernel(&proto, 1, head + nh + 9)) /* iphdr.protocol */
			return false;
	} else if ((first >> 4) == 6) {
		if (bpf_probe_read_kernel(&proto, 1, head + nh + 6)) /* ipv6hdr.nexthdr */
			return false;
	} else {
		return false;
	}
	if (proto != IPPROTO_TCP)
		return false;
	if (bpf_probe_read_kernel(&seq, 4, head + th + 4) || /* tcphdr.seq */
	    bpf_probe_read_kernel(&doff, 1, head + th + 12)) /* data offset: high 4 bits */
		return false;
	len = BPF_CORE_READ(skb, len);
	hdrs = (__u32)(head + th - data) + (doff >> 4) * 4;
	seg->seq = bpf_ntohl(seq);
	seg->payload = len > hdrs ? len - hdrs : 0;
	return true;
}

#endif /* __OTEL_KUBESKOOP_TCPSEG_BPF_H */
