/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel <-> user-space contract of the probes that count events by type per namespace
 * (tcpreset, tcpretrans; typecount.bpf.h): the key of their "counters" map. Types only;
 * mirrored in otel_kubeskoop/bpf/generated/common.py (TypecountKey). Include vmlinux.h (BPF)
 * first for __u32 & co.
 */
#ifndef __OTEL_KUBESKOOP_TYPECOUNT_H
#define __OTEL_KUBESKOOP_TYPECOUNT_H

/* Key of the "counters" map (value: __u64 events, shared by all CPUs). */
struct typecount_key {
	__u32 netns;
	__u32 netns_cookie; /* low 32 bits of the namespace's never-reused id (netns.bpf.h) */
	__u32 type;         /* the probe's event type (enum <probe>_type) */
};

#endif /* __OTEL_KUBESKOOP_TYPECOUNT_H */
