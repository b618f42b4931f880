// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * flow: bytes and packets per IP flow on pod interfaces (see flow.h).
 *
 * Two TC programs, attached by user space (otel_kubeskoop/probes/flow.py) as direct-action
 * cls_bpf filters on the clsact qdisc of each interface inside each pod's network namespace:
 *   flow_ingress  tc ingress: packets the interface received (the pod receives them)
 *   flow_egress   tc egress: packets the interface sends (the pod sends them)
 * Both return TC_ACT_UNSPEC: the filter observes and never decides, so later filters and the
 * qdisc's default action run as if it were not there.
 *
 * The namespace of the interface (its inode and never-reused id, netns.bpf.h net_id()), the key
 * everything is attributed by, is read from the kernel's struct sk_buff (skb->dev->nd_net),
 * reached with the bpf_cast_to_kern_ctx() kfunc (Linux 6.2,
 * commit fd264ca02094 "bpf: Add a kfunc to type cast from bpf uapi ctx to kernel ctx"): an
 * interface index alone is not unique across namespaces.
 *
 * Each IPv4 or IPv6 packet adds its length and its segment count to flows[(netns, direction,
 * family, protocol, addresses, ports)], an LRU hash shared by all CPUs (atomic adds). An LRU
 * evicts silently when full; every insert is counted (flow_stats), so user space knows how many
 * keys were evicted: inserted - deleted by user space - entries now.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netns.bpf.h"
#include "flow.h"

#define TC_ACT_UNSPEC (-1)
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10
#define IP_OFFSET_MASK 0x1fff       /* iphdr.frag_off fragment offset bits (host order) */
#define IPV6_FRAG_OFFSET_MASK 0xfff8 /* frag_hdr.frag_off offset bits (host order) */
#define MAX_L2 64                    /* a link-layer header longer than this is not parsed */
#define IPV6_MAX_EXT 4               /* IPv6 extension headers walked before giving up ports */
/* uapi constants (vmlinux.h has enums, not #defines; these IPv6 ones are #defines). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define EEXIST 17

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Settings (set between open and load). */
const volatile bool targ_ports = false; /* keep ports in the key (enablePortInLabel) */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_MAX_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_stats SEC(".maps");

/* Make clang emit BTF for the enums no map names (tests check their mirrors). */
enum flow_direction *const volatile __btf_export_flow_direction = 0;
enum flow_stat *const volatile __btf_export_flow_stat = 0;

static __always_inline void count(enum flow_stat stat)
{
	__u32 key = stat;
	__u64 *n = bpf_map_lookup_elem(&flow_stats, &key);

	if (n)
		*n += 1;
}

static __always_inline bool has_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE ||
	       protocol == IPPROTO_SCTP;
}

/* The protocol after the IPv6 header at l3 and its extension headers; *l4 its offset, 0 when
 * there are no ports to read (a non-first fragment, or too many extension headers). */
static __always_inline __u8 ipv6_transport(struct __sk_buff *ctx, __u32 l3, __u8 next, __u32 *l4)
{
	__u32 off = l3 + sizeof(struct ipv6hdr);
	__u8 ext[2];
	__be16 frag;
	int i;

	for (i = 0; i < IPV6_MAX_EXT; i++) {
		switch (next) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
			if (bpf_skb_load_bytes(ctx, off, ext, sizeof(ext)))
				goto no_ports;
			next = ext[0];
			off += (ext[1] + 1) * 8;
			break;
		case NEXTHDR_FRAGMENT:
			if (bpf_skb_load_bytes(ctx, off, ext, 1) ||
			    bpf_skb_load_bytes(ctx, off + 2, &frag, sizeof(frag)))
				goto no_ports;
			next = ext[0];
			if (bpf_ntohs(frag) & IPV6_FRAG_OFFSET_MASK) {
				*l4 = 0;
				return next; /* a later fragment: no transport header */
			}
			off += 8;
			break;
		default:
			*l4 = off;
			return next;
		}
	}
no_ports:
	*l4 = 0;
	return next;
}

static __always_inline int count_packet(struct __sk_buff *ctx, __u8 direction)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	struct flow_key key = {};
	struct flow_value *v, init;
	struct netns_id id;
	__u32 l3, l4 = 0, segs;
	__u16 proto = bpf_ntohs(ctx->protocol);
	__be16 ports[2];
	long err;

	/* skb->data is at the link-layer header here, in both directions (cls_bpf pushes it back
	 * at ingress); the network header lies mac_len bytes on (0 on a layer-3 device). */
	if (skb->network_header < skb->mac_header ||
	    skb->network_header - skb->mac_header > MAX_L2)
		return TC_ACT_UNSPEC;
	l3 = skb->network_header - skb->mac_header;

	if (proto == ETH_P_IP) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(ctx, l3, &ip, sizeof(ip)) || ip.version != 4)
			goto not_ip;
		key.family = AF_INET;
		key.protocol = ip.protocol;
		__builtin_memcpy(key.saddr, &ip.saddr, 4);
		__builtin_memcpy(key.daddr, &ip.daddr, 4);
		if (!(bpf_ntohs(ip.frag_off) & IP_OFFSET_MASK))
			l4 = l3 + ip.ihl * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(ctx, l3, &ip6, sizeof(ip6)) || ip6.version != 6)
			goto not_ip;
		key.family = AF_INET6;
		__builtin_memcpy(key.saddr, &ip6.saddr, 16);
		__builtin_memcpy(key.daddr, &ip6.daddr, 16);
		key.protocol = ipv6_transport(ctx, l3, ip6.nexthdr, &l4);
	} else {
		goto not_ip;
	}
	if (targ_ports && l4 && has_ports(key.protocol) &&
	    !bpf_skb_load_bytes(ctx, l4, ports, sizeof(ports))) {
		key.sport = bpf_ntohs(ports[0]);
		key.dport = bpf_ntohs(ports[1]);
	}
	id = net_id(true, skb->dev->nd_net.net);
	key.netns = id.inum;
	key.netns_cookie = id.cookie;
	key.direction = direction;

	segs = ctx->gso_segs ? ctx->gso_segs : 1;
	v = bpf_map_lookup_elem(&flows, &key);
	if (!v) {
		init.bytes = ctx->len;
		init.packets = segs;
		err = bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
		if (!err) {
			count(FLOW_STAT_INSERTED);
			return TC_ACT_UNSPEC;
		}
		v = err == -EEXIST ? bpf_map_lookup_elem(&flows, &key) : NULL;
		if (!v) {
			count(FLOW_STAT_FAILED);
			return TC_ACT_UNSPEC;
		}
	}
	__sync_fetch_and_add(&v->bytes, ctx->len);
	__sync_fetch_and_add(&v->packets, segs);
	return TC_ACT_UNSPEC;

not_ip:
	count(FLOW_STAT_NOT_IP);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int flow_ingress(struct __sk_buff *ctx)
{
	return count_packet(ctx, FLOW_INGRESS);
}

SEC("tc")
int flow_egress(struct __sk_buff *ctx)
{
	return count_packet(ctx, FLOW_EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
