/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Log2 latency histograms and bounded in-flight timestamp maps (BPF side only); the types that
 * cross to user space are in latency.h.
 *
 *   DECLARE_LATENCY_HISTS(key_type, value_type, entries)
 *       "hists": a bounded HASH of key_type -> value_type (whose first member is a struct
 *       latency_hist), shared by all CPUs and updated with atomic adds; "hists_full": a per-CPU
 *       count of the measurements that found it full (kubeskoop.agent.bpf.map.full).
 *       hists_lookup(key) returns the value, created zeroed, or NULL (counted) when full.
 *   latency_add(hist, delta_ns, slow0_ns, slow1_ns)
 *       count one interval in its log2 slot, its sum, and the slow[] counters (0: no threshold).
 *   DECLARE_INFLIGHT(name, key_type, value_type, entries)
 *       an LRU_HASH of start timestamps plus "inflight_stats" (latency.h enum inflight_stat);
 *       inflight_start(), inflight_end(), inflight_discard() keep the counts exact.
 */
#ifndef __OTEL_KUBESKOOP_LATENCY_BPF_H
#define __OTEL_KUBESKOOP_LATENCY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"
#include "latency.h"

#define LATENCY_NSEC_PER_MSEC 1000000ULL

/* floor(log2(v)) for v >= 1, 0 for 0: the histogram slot of v nanoseconds, before clamping. */
static __always_inline __u32 latency_log2(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xffffffffULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xffff) << 4; v >>= shift; r |= shift;
	shift = (v > 0xff) << 3; v >>= shift; r |= shift;
	shift = (v > 0xf) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline void latency_add(struct latency_hist *h, __u64 delta_ns, __u64 slow0_ns,
					__u64 slow1_ns)
{
	__u32 slot = latency_log2(delta_ns);

	if (slot >= LATENCY_SLOTS)
		slot = LATENCY_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
	if (slow0_ns && delta_ns > slow0_ns)
		__sync_fetch_and_add(&h->slow[0], 1);
	if (slow1_ns && delta_ns > slow1_ns)
		__sync_fetch_and_add(&h->slow[1], 1);
}

#define DECLARE_LATENCY_HISTS(key_type, value_type, entries)			\
	value_type hists_zero = {};						\
	struct {								\
		__uint(type, BPF_MAP_TYPE_HASH);				\
		__uint(max_entries, entries);					\
		__type(key, key_type);						\
		__type(value, value_type);					\
	} hists SEC(".maps");							\
	struct {								\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);			\
		__uint(max_entries, 1);						\
		__type(key, __u32);						\
		__type(value, __u64);						\
	} hists_full SEC(".maps");						\
	static __always_inline value_type *hists_lookup(const key_type *key)	\
	{									\
		__u32 zero = 0;							\
		value_type *v;							\
		__u64 *full;							\
										\
		v = map_lookup_or_try_init(&hists, key, &hists_zero);		\
		if (v)								\
			return v;						\
		full = bpf_map_lookup_elem(&hists_full, &zero);			\
		if (full)							\
			*full += 1;						\
		return NULL;							\
	}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, INFLIGHT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} inflight_stats SEC(".maps");

static __always_inline void inflight_count(enum inflight_stat stat)
{
	__u32 key = stat;
	__u64 *n = bpf_map_lookup_elem(&inflight_stats, &key);

	if (n)
		*n += 1;
}

/* An LRU_HASH "name" of start records: bounded, and what it evicts is counted by difference. */
#define DECLARE_INFLIGHT(name, key_type, value_type, entries)			\
	struct {								\
		__uint(type, BPF_MAP_TYPE_LRU_HASH);				\
		__uint(max_entries, entries);					\
		__type(key, key_type);						\
		__type(value, value_type);					\
	} name SEC(".maps")

/* Record a start; a start for a key already in flight replaces it (and is counted as such). */
static __always_inline void inflight_start(void *map, const void *key, const void *value)
{
	long err = bpf_map_update_elem(map, key, value, BPF_NOEXIST);

	if (!err) {
		inflight_count(INFLIGHT_STARTED);
	} else if (err == -EEXIST) {
		bpf_map_update_elem(map, key, value, BPF_EXIST);
		inflight_count(INFLIGHT_REPLACED);
	}
}

/* Remove an entry an end point has used (the caller looked it up). */
static __always_inline void inflight_end(void *map, const void *key)
{
	if (!bpf_map_delete_elem(map, key))
		inflight_count(INFLIGHT_ENDED);
}

/* Remove an entry that will never see its end point. */
static __always_inline void inflight_discard(void *map, const void *key)
{
	if (!bpf_map_delete_elem(map, key))
		inflight_count(INFLIGHT_DISCARDED);
}

#endif /* __OTEL_KUBESKOOP_LATENCY_BPF_H */
