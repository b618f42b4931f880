/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Log2 latency histograms and bounded in-flight start tables (BPF side only); the types that
 * cross to user space are in latency.h.
 *
 *   DECLARE_LATENCY_HISTS(key_type, value_type, entries)
 *       "hists": a bounded table of key_type -> value_type (whose first member is a struct
 *       latency_hist), shared by all CPUs and updated with atomic adds (plain ones where the key
 *       holds the CPU: latency_add_this_cpu()); "hists_full": a per-CPU count of the
 *       measurements that found no room (kubeskoop.agent.bpf.map.full).
 *       hists_lookup(key) returns the value, created zeroed, or NULL (counted) when full.
 *   latency_add(hist, delta_ns, slow0_ns, slow1_ns)
 *       count one interval in its log2 slot, its sum, and the slow[] counters (0: no threshold);
 *       latency_add_this_cpu() for a histogram only its own CPU updates.
 *   DECLARE_INFLIGHT(name, key_type, value_type, entries)
 *       a bounded table of start records plus "inflight_stats" (latency.h enum inflight_stat),
 *       one per probe, counted through NAME(inflight_count)();
 *       name_start(), name_get(), name_lookup(), name_end(), name_discard() keep the counts
 *       exact.
 */
#ifndef __OTEL_KUBESKOOP_LATENCY_BPF_H
#define __OTEL_KUBESKOOP_LATENCY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"
#include "probe.bpf.h"
#include "events.bpf.h"
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

/* Add n to *p: atomically where CPUs share the histogram, plainly where one CPU owns it. */
#define LATENCY_ADD(shared, p, n)				\
	do {							\
		if (shared)					\
			__sync_fetch_and_add((p), (n));		\
		else						\
			*(p) += (n);				\
	} while (0)

static __always_inline void __latency_add(bool shared, struct latency_hist *h, __u64 delta_ns,
					  __u64 slow0_ns, __u64 slow1_ns)
{
	__u32 slot = latency_log2(delta_ns);

	if (slot >= LATENCY_SLOTS)
		slot = LATENCY_SLOTS - 1;
	LATENCY_ADD(shared, &h->slots[slot], 1);
	LATENCY_ADD(shared, &h->sum_ns, delta_ns);
	if (slow0_ns && delta_ns > slow0_ns)
		LATENCY_ADD(shared, &h->slow[0], 1);
	if (slow1_ns && delta_ns > slow1_ns)
		LATENCY_ADD(shared, &h->slow[1], 1);
}

static __always_inline void latency_add(struct latency_hist *h, __u64 delta_ns, __u64 slow0_ns,
					__u64 slow1_ns)
{
	__latency_add(true, h, delta_ns, slow0_ns, slow1_ns);
}

/*
 * The same for a histogram whose key holds the CPU, updated only from contexts that do not nest on
 * one CPU (softirq entry and exit: a softirq never preempts another on its CPU): plain adds, no
 * locked instruction.
 */
static __always_inline void latency_add_this_cpu(struct latency_hist *h, __u64 delta_ns,
						 __u64 slow0_ns, __u64 slow1_ns)
{
	__latency_add(false, h, delta_ns, slow0_ns, slow1_ns);
}

/*
 * A key word as a number the verifier lets us multiply. A word that holds a BTF-typed argument (an
 * skb, a socket) is tracked as a pointer, and multiplying a pointer is refused; negating a
 * register makes it a plain scalar for a privileged program (check_alu_op(): BPF_NEG on a pointer
 * is refused only without allow_ptr_leaks). The negated word hashes as well as the word.
 */
static __always_inline __u64 latency_number(__u64 w)
{
	asm volatile("%0 = -%0" : "+r"(w));
	return w;
}

/* Fibonacci hashing (Knuth, TAOCP 6.4): the high bits of key * 2^64/phi are well mixed. */
#define LATENCY_HASH_MULT 0x9E3779B97F4A7C15ULL

/*
 * prefix_index(key, words, mask): the home slot of a key of `words` words of word_t in a table of
 * mask + 1 slots (a power of two); prefix_key_eq(a, b, words). Histogram keys are 32-bit words;
 * in-flight keys hold pointers, which the verifier lets a program read from the stack only whole,
 * so they are 64-bit words.
 */
#define DEFINE_LATENCY_KEY_FUNCS(prefix, word_t)					\
	static __always_inline __u32 prefix##_index(const word_t *key, __u32 words, __u32 mask) \
	{										\
		__u64 h = 0;								\
		__u32 i;								\
											\
		_Pragma("unroll")							\
		for (i = 0; i < words; i++)						\
			h = (h ^ latency_number(key[i])) * LATENCY_HASH_MULT;		\
		return (__u32)(h >> 32) & mask;						\
	}										\
	static __always_inline bool prefix##_key_eq(const word_t *a, const word_t *b, __u32 words) \
	{										\
		__u32 i;								\
											\
		_Pragma("unroll")							\
		for (i = 0; i < words; i++)						\
			if (a[i] != b[i])						\
				return false;						\
		return true;								\
	}

DEFINE_LATENCY_KEY_FUNCS(hist, __u32)
DEFINE_LATENCY_KEY_FUNCS(inflight, __u64)

BTF_EXPORT(enum hist_slot_state, hist_slot_state);

/*
 * "hists": an open-addressed table in an ARRAY map (BPF_F_MMAPABLE: user space reads it in
 * place), each slot a struct hists_slot { state, key, value }. A key lives in one of the
 * LATENCY_HIST_PROBES slots from its home slot on. Looking a key up is plain loads, inlined by
 * the verifier: a HASH map lookup is a function call, a hash and a bucket walk, which cost about
 * 3% of iperf3 throughput over a veth with the six latency and flow probes loaded
 * (bench/datapath.py, README). A new key takes the first free or deleted slot of its window with a
 * compare-and-swap, zeroes the value, then marks it ready; two CPUs adding the same key at once
 * may each take a slot, and user space adds such duplicates up. User space marks the slots of
 * namespaces that are gone HIST_DELETED, for later keys to reuse. hists_mask (the slot count - 1,
 * a power of two) is rodata, for probes whose user space sizes the table.
 */
#define DECLARE_LATENCY_HISTS(key_type, value_type, entries)				\
	_Static_assert(sizeof(key_type) % 4 == 0, #key_type " is not whole 32-bit words");	\
	_Static_assert(((entries) & ((entries) - 1)) == 0, "hists size is not a power of 2"); \
	const volatile __u32 NAME(hists_mask) = (entries) - 1;				\
	struct NAME(hists_slot) {								\
		__u64 state; /* enum hist_slot_state */					\
		key_type key;								\
		value_type value;							\
	};										\
	struct {									\
		__uint(type, BPF_MAP_TYPE_ARRAY);					\
		__uint(map_flags, BPF_F_MMAPABLE);					\
		__uint(max_entries, entries);						\
		__type(key, __u32);							\
		__type(value, struct NAME(hists_slot));					\
	} NAME(hists) SEC(".maps");								\
	struct {									\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);				\
		__uint(max_entries, 1);							\
		__type(key, __u32);							\
		__type(value, __u64);							\
	} NAME(hists_full) SEC(".maps");							\
	static __always_inline struct NAME(hists_slot) *NAME(hists_slot_at)(__u32 home, __u32 i)	\
	{										\
		__u32 idx = (home + i) & NAME(hists_mask);					\
											\
		return bpf_map_lookup_elem(&NAME(hists), &idx);				\
	}										\
	static __always_inline value_type *NAME(hists_lookup)(const key_type *key)		\
	{										\
		const __u32 words = sizeof(*key) / 4;					\
		__u32 home = hist_index((const __u32 *)key, words, NAME(hists_mask)), i, zero = 0; \
		struct NAME(hists_slot) *s;							\
		__u64 state, *full;							\
											\
		_Pragma("unroll")							\
		for (i = 0; i < LATENCY_HIST_PROBES; i++) {				\
			s = NAME(hists_slot_at)(home, i);					\
			if (!s)								\
				return NULL;						\
			state = s->state;						\
			if (state == HIST_READY &&					\
			    hist_key_eq((const __u32 *)&s->key, (const __u32 *)key, words)) \
				return &s->value;					\
			if (state == HIST_FREE)						\
				break; /* no key was ever put past a free slot */	\
		}									\
		_Pragma("unroll")							\
		for (i = 0; i < LATENCY_HIST_PROBES; i++) {				\
			s = NAME(hists_slot_at)(home, i);					\
			if (!s)								\
				return NULL;						\
			state = s->state;						\
			if (state != HIST_FREE && state != HIST_DELETED)		\
				continue;						\
			if (__sync_val_compare_and_swap(&s->state, state, HIST_CLAIMED) != state) \
				continue;						\
			__builtin_memset(&s->value, 0, sizeof(s->value));		\
			s->key = *key;							\
			__sync_lock_test_and_set(&s->state, HIST_READY);		\
			return &s->value;						\
		}									\
		full = bpf_map_lookup_elem(&NAME(hists_full), &zero);				\
		if (full)								\
			*full += 1;							\
		return NULL;								\
	}

/* Not every probe uses every function DECLARE_INFLIGHT defines. */
#define INFLIGHT_FN static __always_inline __attribute__((unused))

/*
 * The in-flight table "name": start records waiting for their end point, in a direct-mapped
 * table of `entries` slots (an ARRAY map; a power of two), each holding one key and its value.
 * A key goes to one slot, picked by hashing it; a start whose slot holds another key overwrites
 * it and counts that key as evicted (INFLIGHT_EVICTED), so the table is bounded, its losses are
 * exact, and a record left behind (its end point never came) is reclaimed by the next start that
 * needs its slot. Array lookups are inlined by the verifier: no helper call, no lock, no
 * allocation on the per-packet path, which a hash map's update and delete cost (measured:
 * bench/datapath.py, README). Keys are whole 64-bit words.
 *
 * Two CPUs starting keys that share a slot at the same instant may leave one of them unmatched
 * (counted). A writer marks the slot free before it rewrites it, and name_get() checks the key
 * again after copying the value, so a measurement made from that copy never uses another key's
 * start. name_lookup() gives the value in place, for end points that also update it
 * (socketlatency, netiftxlat): there a start of another key in the same slot, on another CPU, in
 * the same instant, could still mix the two records.
 *
 *   name_start(key, value)   record a start (a start for a key already there replaces it)
 *   name_get(key, out)       copy the value recorded for key into out; false if none
 *   name_lookup(key)         the value in place, to update it, or NULL
 *   name_end(key)            remove key after its measurement
 *   name_discard(key)        remove key without a measurement (its packet was freed, say)
 */
#define DECLARE_INFLIGHT(name, key_type, value_type, entries)				\
	_Static_assert(sizeof(key_type) % 8 == 0, #key_type " is not whole 64-bit words");	\
	_Static_assert(((entries) & ((entries) - 1)) == 0, #name " size is not a power of 2");	\
	struct name##_slot {								\
		__u64 used;								\
		key_type key;								\
		value_type value;							\
	};										\
	struct {									\
		__uint(type, BPF_MAP_TYPE_ARRAY);					\
		__uint(max_entries, entries);						\
		__type(key, __u32);							\
		__type(value, struct name##_slot);					\
	} name SEC(".maps");								\
	struct {									\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);				\
		__uint(max_entries, INFLIGHT__MAX);					\
		__type(key, __u32);							\
		__type(value, __u64);							\
	} NAME(inflight_stats) SEC(".maps");						\
	INFLIGHT_FN void NAME(inflight_count)(enum inflight_stat stat)			\
	{										\
		__u32 key = stat;							\
		__u64 *n = bpf_map_lookup_elem(&NAME(inflight_stats), &key);		\
											\
		if (n)									\
			*n += 1;							\
	}										\
	INFLIGHT_FN struct name##_slot *name##_slot(const key_type *key)	\
	{										\
		__u32 idx = inflight_index((const __u64 *)key, sizeof(*key) / 8, (entries) - 1); \
											\
		return bpf_map_lookup_elem(&name, &idx);				\
	}										\
	INFLIGHT_FN bool name##_holds(const struct name##_slot *slot,	\
						 const key_type *key)			\
	{										\
		return slot->used && inflight_key_eq((const __u64 *)&slot->key,	\
						     (const __u64 *)key, sizeof(*key) / 8); \
	}										\
	INFLIGHT_FN void name##_start(const key_type *key, const value_type *value) \
	{										\
		struct name##_slot *slot = name##_slot(key);				\
											\
		if (!slot)								\
			return;								\
		if (name##_holds(slot, key)) {						\
			NAME(inflight_count)(INFLIGHT_REPLACED);				\
		} else {								\
			if (slot->used)							\
				NAME(inflight_count)(INFLIGHT_EVICTED);			\
			NAME(inflight_count)(INFLIGHT_STARTED);				\
		}									\
		slot->used = 0;								\
		barrier();								\
		slot->key = *key;							\
		slot->value = *value;							\
		barrier();								\
		slot->used = 1;								\
	}										\
	INFLIGHT_FN value_type *name##_lookup(const key_type *key)		\
	{										\
		struct name##_slot *slot = name##_slot(key);				\
											\
		if (!slot || !name##_holds(slot, key))					\
			return NULL;							\
		return &slot->value;							\
	}										\
	INFLIGHT_FN bool name##_get(const key_type *key, value_type *out)	\
	{										\
		struct name##_slot *slot = name##_slot(key);				\
											\
		if (!slot || !name##_holds(slot, key))					\
			return false;							\
		*out = slot->value;							\
		barrier();								\
		return name##_holds(slot, key);						\
	}										\
	INFLIGHT_FN bool name##_remove(const key_type *key)			\
	{										\
		struct name##_slot *slot = name##_slot(key);				\
											\
		if (!slot || !name##_holds(slot, key))					\
			return false;							\
		slot->used = 0;								\
		return true;								\
	}										\
	INFLIGHT_FN void name##_end(const key_type *key)			\
	{										\
		if (name##_remove(key))							\
			NAME(inflight_count)(INFLIGHT_ENDED);					\
	}										\
	INFLIGHT_FN void name##_discard(const key_type *key)			\
	{										\
		if (name##_remove(key))							\
			NAME(inflight_count)(INFLIGHT_DISCARDED);				\
	}

#endif /* __OTEL_KUBESKOOP_LATENCY_BPF_H */
