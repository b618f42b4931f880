/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel <-> user-space contract of the per-remote maps of tcprtt and tcpconnect (remote.bpf.h):
 * the key, a namespace and the address of a socket's peer. User space drains these maps every
 * collection and folds the addresses into a bounded set of remotes (a pod, a service, the node,
 * "external": otel_kubeskoop/probes/_remotes.py). Types only; mirrored in
 * otel_kubeskoop/bpf/generated/common.py (RemoteKey). Include vmlinux.h (BPF) first for __u32 & co.
 */
#ifndef __OTEL_KUBESKOOP_REMOTE_H
#define __OTEL_KUBESKOOP_REMOTE_H

/* Key of a "remotes" map. */
struct remote_key {
	__u32 netns;
	__u32 netns_cookie; /* low 32 bits of the namespace's never-reused id (netns.bpf.h) */
	__u32 family;       /* AF_INET or AF_INET6 */
	__u8 addr[16];      /* the peer's address (skc_daddr), network byte order; IPv4 in 4 bytes */
};

#endif /* __OTEL_KUBESKOOP_REMOTE_H */
