/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * A probe's "remotes": a bounded HASH of struct remote_key (remote.h) -> value_type, shared by
 * all CPUs, which user space reads and empties every collection (BPF_MAP_LOOKUP_AND_DELETE_BATCH)
 * and folds into its own totals, so the map holds only the peers seen since the last collection;
 * plus "remotes_full", a per-CPU count of the updates that found no room
 * (kubeskoop.agent.bpf.map.full), and "remotes_zero", an entry never written: the value a new key
 * starts from (a value too large for the 512-byte stack).
 *
 *   remote_key_of(key, sk, id)   the key of a socket's peer; false when it is not IPv4 or IPv6
 *   NAME(remotes_lookup)(key)    the value, created zeroed, or NULL (counted) when the map is full
 *
 * Only on slow paths (a socket's state change; one RTT sample per socket per interval): a hash
 * lookup is a helper call and a bucket walk.
 */
#ifndef __OTEL_KUBESKOOP_REMOTE_BPF_H
#define __OTEL_KUBESKOOP_REMOTE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "remote.h"

static __always_inline bool remote_key_of(struct remote_key *k, const struct sock *sk,
					  struct netns_id id)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	k->netns = id.inum;
	k->netns_cookie = id.cookie;
	k->family = family;
	if (family == AF_INET)
		return !bpf_core_read(k->addr, sizeof(__be32), &sk->__sk_common.skc_daddr);
	if (family == AF_INET6)
		return !bpf_core_read(k->addr, sizeof(struct in6_addr),
				      &sk->__sk_common.skc_v6_daddr);
	return false;
}

#define DECLARE_REMOTES(value_type, entries)						\
	struct {									\
		__uint(type, BPF_MAP_TYPE_HASH);					\
		__uint(max_entries, entries);						\
		__type(key, struct remote_key);						\
		__type(value, value_type);						\
	} NAME(remotes) SEC(".maps");							\
	struct {									\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);				\
		__uint(max_entries, 1);							\
		__type(key, __u32);							\
		__type(value, __u64);							\
	} NAME(remotes_full) SEC(".maps");						\
	struct {									\
		__uint(type, BPF_MAP_TYPE_ARRAY);					\
		__uint(max_entries, 1);							\
		__type(key, __u32);							\
		__type(value, value_type);						\
	} NAME(remotes_zero) SEC(".maps");						\
	static __always_inline value_type *NAME(remotes_lookup)(const struct remote_key *key) \
	{										\
		__u32 zero = 0;								\
		value_type *v, *init;							\
		__u64 *full;								\
											\
		init = bpf_map_lookup_elem(&NAME(remotes_zero), &zero);			\
		if (!init)								\
			return NULL;							\
		v = map_lookup_or_try_init(&NAME(remotes), key, init);			\
		if (v)									\
			return v;							\
		full = bpf_map_lookup_elem(&NAME(remotes_full), &zero);			\
		if (full)								\
			*full += 1;							\
		return NULL;								\
	}

#endif /* __OTEL_KUBESKOOP_REMOTE_BPF_H */
