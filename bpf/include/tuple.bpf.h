/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Fill a struct flow_tuple (tuple.h) from a socket or from a packet's headers. CO-RE and probe
 * reads only, so these work from any program type and never fault on a bad pointer (a failed
 * read leaves zeros).
 */
#ifndef __OTEL_KUBESKOOP_TUPLE_BPF_H
#define __OTEL_KUBESKOOP_TUPLE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tuple.h"

/* uapi constants; vmlinux.h carries enums, not #defines. */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define TUPLE_ETH_P_IP 0x0800
#define TUPLE_ETH_P_IPV6 0x86DD
#define TUPLE_IP_OFFSET_MASK 0x1fff /* fragment offset bits of iphdr.frag_off (host order) */

/*
 * The connection of a socket as seen from it: source = the local end (skc_rcv_saddr, skc_num),
 * destination = the peer (skc_daddr, skc_dport). Works for full, request and time-wait sockets:
 * the fields live in struct sock_common, which all three start with.
 *
 * A full socket that has just moved to TCP_CLOSE (tcp_disconnect(), before it sends an active
 * reset) has released its port: inet_put_port() zeroed skc_num, but inet_sk(sk)->inet_sport,
 * which the RST is built from, still holds it. Only full sockets have a struct inet_sock, so it
 * is read only when skc_num is 0 and the state is neither TIME_WAIT nor NEW_SYN_RECV
 * (sk_fullsock()).
 */
static __always_inline void tuple_from_sock(struct flow_tuple *t, const struct sock *sk)
{
	__u16 family;
	__u8 state;

	if (!sk)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	t->family = family;
	t->protocol = IPPROTO_TCP;
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!t->sport && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
		t->sport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		bpf_core_read(t->saddr, sizeof(__be32), &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, sizeof(__be32), &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(t->saddr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, sizeof(struct in6_addr), &sk->__sk_common.skc_v6_daddr);
	}
}

/*
 * The addresses of a packet, from its IP header at skb->head + skb->network_header, trusted only
 * when skb->protocol says IPv4 or IPv6 and the header's version agrees (before the IP layer has
 * set them, network_header means nothing). Ports for TCP, UDP, UDP-Lite and SCTP when the
 * packet is not a non-first IPv4 fragment. IPv6 extension headers are not walked: protocol is
 * then the first next-header value and there are no ports.
 * Returns false, leaving family 0, for a packet that is not IP.
 */
static __always_inline bool tuple_from_skb(struct flow_tuple *t, const struct sk_buff *skb)
{
	unsigned char *head;
	__u16 proto, nh;
	__u32 l4 = 0;
	__be16 ports[2];
	__u8 first;

	if (!skb)
		return false;
	head = BPF_CORE_READ(skb, head);
	nh = BPF_CORE_READ(skb, network_header);
	proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (!head || nh == (__u16)~0U)
		return false;
	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return false;

	if (proto == TUPLE_ETH_P_IP && (first >> 4) == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return false;
		t->family = AF_INET;
		t->protocol = ip.protocol;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		if (bpf_ntohs(ip.frag_off) & TUPLE_IP_OFFSET_MASK)
			return true; /* a later fragment: no transport header */
		l4 = nh + (first & 0x0f) * 4;
	} else if (proto == TUPLE_ETH_P_IPV6 && (first >> 4) == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return false;
		t->family = AF_INET6;
		t->protocol = ip6.nexthdr;
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		l4 = nh + sizeof(struct ipv6hdr);
	} else {
		return false;
	}

	if (t->protocol == IPPROTO_TCP || t->protocol == IPPROTO_UDP ||
	    t->protocol == IPPROTO_UDPLITE || t->protocol == IPPROTO_SCTP) {
		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + l4)) {
			t->sport = bpf_ntohs(ports[0]);
			t->dport = bpf_ntohs(ports[1]);
		}
	}
	return true;
}

/* The tuple of a packet, source and destination swapped: the reply's (a RST answering it). */
static __always_inline bool tuple_from_skb_reply(struct flow_tuple *t, const struct sk_buff *skb)
{
	struct flow_tuple in = {};
	bool ok = tuple_from_skb(&in, skb);

	__builtin_memcpy(t->saddr, in.daddr, 16);
	__builtin_memcpy(t->daddr, in.saddr, 16);
	t->family = in.family;
	t->protocol = in.protocol;
	t->sport = in.dport;
	t->dport = in.sport;
	return ok;
}

#endif /* __OTEL_KUBESKOOP_TUPLE_BPF_H */
