/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The network namespace of a socket or a packet, as its inode number (net->ns.inum): the key every
 * probe uses and the number `readlink /proc/<pid>/ns/net` shows (otel_kubeskoop/topology/netns.py).
 * btf: the program's kind, as kread.bpf.h says (a constant).
 */
#ifndef __OTEL_KUBESKOOP_NETNS_BPF_H
#define __OTEL_KUBESKOOP_NETNS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include "kread.bpf.h"

/* The namespace of a socket; 0 when sk is NULL. */
static __always_inline __u32 sk_netns(bool btf, const struct sock *sk)
{
	if (!sk)
		return 0;
	return KREAD(btf, sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * The namespace of a packet: that of its device (skb->dev->nd_net), else that of its socket
 * (skb->sk); 0 when it has neither. While an skb sits in a socket receive queue skb->dev shares a
 * union with dev_scratch, so the device read can yield nothing: the socket fallback covers that,
 * and the probe-read behind BPF_CORE_READ makes a bad pointer read 0 instead of faulting.
 */
static __always_inline __u32 skb_netns(bool btf, const struct sk_buff *skb)
{
	struct net_device *dev;
	__u32 inum = 0;

	if (!skb)
		return 0;
	dev = KREAD(btf, skb, dev);
	if (dev)
		inum = KREAD(btf, dev, nd_net.net, ns.inum);
	if (!inum)
		inum = sk_netns(btf, KREAD(btf, skb, sk));
	return inum;
}

/*
 * A namespace's identity, as counters need it. Its inode number is not enough: inode numbers of
 * freed namespaces are given to new ones (measured here: a namespace deleted and one created
 * right after often share it), so counters keyed by the inode alone would carry a dead pod's
 * counts over to the next. The kernel also numbers each namespace once and for all:
 * net->ns.ns_id (struct ns_common, Linux 6.18, the namespace tree series, where net->net_cookie
 * became a copy of it) or, before, net->net_cookie. Its low 32 bits go next to the inode; 0 on a
 * kernel with neither (and then inode reuse is not detected).
 */
struct netns_id {
	__u32 inum;
	__u32 cookie;
};

static __always_inline struct netns_id net_id(bool btf, const struct net *net)
{
	struct netns_id id = {};

	if (!net)
		return id;
	id.inum = KREAD(btf, net, ns.inum);
	if (bpf_core_field_exists(net->ns.ns_id))
		id.cookie = (__u32)KREAD(btf, net, ns.ns_id);
	else if (bpf_core_field_exists(net->net_cookie))
		id.cookie = (__u32)KREAD(btf, net, net_cookie);
	return id;
}

/* The identity of a socket's namespace; zeros when sk is NULL. */
static __always_inline struct netns_id sk_netns_id(bool btf, const struct sock *sk)
{
	struct netns_id none = {};

	if (!sk)
		return none;
	return net_id(btf, KREAD(btf, sk, __sk_common.skc_net.net));
}

/* The identity of a packet's namespace: its device's, else its socket's (as skb_netns()). */
static __always_inline struct netns_id skb_netns_id(bool btf, const struct sk_buff *skb)
{
	struct netns_id id = {};
	struct net_device *dev;

	if (!skb)
		return id;
	dev = KREAD(btf, skb, dev);
	if (dev)
		id = net_id(btf, KREAD(btf, dev, nd_net.net));
	if (!id.inum)
		id = sk_netns_id(btf, KREAD(btf, skb, sk));
	return id;
}

#endif /* __OTEL_KUBESKOOP_NETNS_BPF_H */
