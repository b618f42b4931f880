/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/* Map helpers shared by the probes (BPF side only). After libbpf-tools' maps.bpf.h. */
#ifndef __OTEL_KUBESKOOP_MAPS_BPF_H
#define __OTEL_KUBESKOOP_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "probe.bpf.h"

#ifndef EEXIST
#define EEXIST 17
#endif

/*
 * The value under key, inserting init first when there is none. NULL only when the map is full
 * (or another error): callers count that and move on.
 */
static __always_inline void *map_lookup_or_try_init(void *map, const void *key, const void *init)
{
	void *val;
	long err;

	val = bpf_map_lookup_elem(map, key);
	if (val)
		return val;
	err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

/*
 * Add n to the __u64 counter under key of a per-CPU map (PERCPU_ARRAY or PERCPU_HASH), creating
 * it at zero in a hash. This CPU's slot only, so no atomic is needed; user space sums the CPUs.
 * False when the key could not be inserted (the hash is full): callers count that.
 */
static __always_inline bool percpu_counter_add(void *map, const void *key, __u64 n)
{
	__u64 zero = 0;
	__u64 *val;

	val = map_lookup_or_try_init(map, key, &zero);
	if (!val)
		return false;
	*val += n;
	return true;
}

/* The same for a map shared by all CPUs (ARRAY or HASH): an atomic add. */
static __always_inline bool shared_counter_add(void *map, const void *key, __u64 n)
{
	__u64 zero = 0;
	__u64 *val;

	val = map_lookup_or_try_init(map, key, &zero);
	if (!val)
		return false;
	__sync_fetch_and_add(val, n);
	return true;
}

/*
 * A probe's counters: a bounded HASH of struct <probe>_key -> __u64 shared by all CPUs, plus a
 * per-CPU count of the increments that found it full ("counters_full"), which user space exports
 * (kubeskoop.agent.bpf.map.full) so that a full map is never silent.
 */
#define DECLARE_COUNTERS(key_type, entries)				\
	struct {							\
		__uint(type, BPF_MAP_TYPE_HASH);			\
		__uint(max_entries, entries);				\
		__type(key, key_type);					\
		__type(value, __u64);					\
	} NAME(counters) SEC(".maps");					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);		\
		__uint(max_entries, 1);					\
		__type(key, __u32);					\
		__type(value, __u64);					\
	} NAME(counters_full) SEC(".maps");					\
	static __always_inline void NAME(counters_add)(const key_type *key)	\
	{								\
		__u32 zero = 0;						\
		__u64 *full;						\
									\
		if (shared_counter_add(&NAME(counters), key, 1))		\
			return;						\
		full = bpf_map_lookup_elem(&NAME(counters_full), &zero);	\
		if (full)						\
			*full += 1;					\
	}

#endif /* __OTEL_KUBESKOOP_MAPS_BPF_H */
