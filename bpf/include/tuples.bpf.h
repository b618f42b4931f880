/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Counts per connection or packet tuple (struct flow_tuple), for the compat endpoint's tuple
 * labels: upstream KubeSkoop labels its packetloss and tcpretrans series with the packet's
 * addresses (otel_kubeskoop/telemetry/compat_tuples.py). An LRU hash, so the tuples counted least
 * recently make room for new ones; each insert is counted in <name>_inserted, so user space knows
 * how many were evicted (inserts less the entries it finds).
 */
#ifndef __OTEL_KUBESKOOP_TUPLES_BPF_H
#define __OTEL_KUBESKOOP_TUPLES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tuple.h"

#define DECLARE_TUPLES(name, entries)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_LRU_HASH);			\
		__uint(max_entries, entries);				\
		__type(key, struct flow_tuple);				\
		__type(value, __u64);					\
	} name SEC(".maps");						\
	struct {							\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);		\
		__uint(max_entries, 1);					\
		__type(key, __u32);					\
		__type(value, __u64);					\
	} name##_inserted SEC(".maps")

/* Add 1 to tuple's count in map, inserting it (and counting the insert) when it is new. */
static __always_inline void tuples_add(void *map, void *inserted, const struct flow_tuple *tuple)
{
	__u64 one = 1, *val, *count;
	__u32 zero = 0;

	val = bpf_map_lookup_elem(map, tuple);
	if (val) {
		__sync_fetch_and_add(val, 1);
		return;
	}
	if (!bpf_map_update_elem(map, tuple, &one, BPF_NOEXIST)) {
		count = bpf_map_lookup_elem(inserted, &zero);
		if (count)
			*count += 1;
		return;
	}
	val = bpf_map_lookup_elem(map, tuple); /* another CPU inserted it first */
	if (val)
		__sync_fetch_and_add(val, 1);
}

#endif /* __OTEL_KUBESKOOP_TUPLES_BPF_H */
