/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The network namespace of a socket or a packet, as its inode number (net->ns.inum): the key every
 * probe uses and the number `readlink /proc/<pid>/ns/net` shows (otel_kubeskoop/topology/netns.py).
 * CO-RE reads only, so these work from any program type.
 */
#ifndef __OTEL_KUBESKOOP_NETNS_BPF_H
#define __OTEL_KUBESKOOP_NETNS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/* The namespace of a socket; 0 when sk is NULL. */
static __always_inline __u32 sk_netns(const struct sock *sk)
{
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * The namespace of a packet: that of its device (skb->dev->nd_net), else that of its socket
 * (skb->sk); 0 when it has neither. While an skb sits in a socket receive queue skb->dev shares a
 * union with dev_scratch, so the device read can yield nothing: the socket fallback covers that,
 * and the probe-read behind BPF_CORE_READ makes a bad pointer read 0 instead of faulting.
 */
static __always_inline __u32 skb_netns(const struct sk_buff *skb)
{
	struct net_device *dev;
	__u32 inum = 0;

	if (!skb)
		return 0;
	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		inum = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (!inum)
		inum = sk_netns(BPF_CORE_READ(skb, sk));
	return inum;
}

#endif /* __OTEL_KUBESKOOP_NETNS_BPF_H */
