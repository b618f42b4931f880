/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Per-(network namespace, event type) token bucket, so that one noisy pod cannot flood the ring
 * buffer and starve the others. Events the bucket refuses are not lost silently: events.bpf.h
 * counts them in "losses" under EVENT_LOSS_RATE_LIMITED.
 *
 * Settings (DECLARE_RATELIMIT(), NAME() and SETTING: probe.bpf.h), set by user space between open
 * and load, or, in the shared object, before the probe's bit is set:
 *   targ_rate_per_sec  tokens added per second per bucket; 0 turns the limiter off
 *   targ_burst         bucket capacity: events allowed back to back after a quiet period
 *                      (0 with a non-zero rate: emit nothing, count everything as limited)
 *
 * Buckets live in an LRU hash, so a node with more busy namespaces than entries forgets the least
 * recently seen ones (they start again full) instead of failing. Two CPUs updating one bucket at
 * the same instant can race and let an event more, or one fewer, through; each event is still
 * either emitted or counted, so the accounting stays exact.
 */
#ifndef __OTEL_KUBESKOOP_RATELIMIT_BPF_H
#define __OTEL_KUBESKOOP_RATELIMIT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "probe.bpf.h"

#define RATELIMIT_NSEC_PER_SEC 1000000000ULL
#define RATELIMIT_MAX_BUCKETS 4096

struct ratelimit_key {
	__u32 netns;
	__u32 type;
};

/* Tokens are kept in units of 1e-9 token, so that refilling needs no division per event. */
struct ratelimit_bucket {
	__u64 credit; /* tokens * 1e9 */
	__u64 last_ns;
};

/*
 * One probe's settings, buckets and NAME(ratelimit_allow)(netns, type): whether an event of this
 * type in this namespace may be emitted now (taking a token if so). events.bpf.h declares it.
 */
#define DECLARE_RATELIMIT()									\
	SETTING __u32 NAME(targ_rate_per_sec) = 100;						\
	SETTING __u32 NAME(targ_burst) = 100;							\
	struct {										\
		__uint(type, BPF_MAP_TYPE_LRU_HASH);						\
		__uint(max_entries, RATELIMIT_MAX_BUCKETS);					\
		__type(key, struct ratelimit_key);						\
		__type(value, struct ratelimit_bucket);						\
	} NAME(ratelimit) SEC(".maps");								\
	static __always_inline bool NAME(ratelimit_allow)(__u32 netns, __u16 type)		\
	{											\
		struct ratelimit_key key = { .netns = netns, .type = type };			\
		struct ratelimit_bucket *b, fresh;						\
		__u64 now, cap, elapsed, max_elapsed, credit;					\
												\
		if (NAME(targ_rate_per_sec) == 0)						\
			return true;								\
		if (NAME(targ_burst) == 0)							\
			return false;								\
		now = bpf_ktime_get_ns();							\
		cap = (__u64)NAME(targ_burst) * RATELIMIT_NSEC_PER_SEC;				\
		b = bpf_map_lookup_elem(&NAME(ratelimit), &key);				\
		if (!b) {									\
			/* The bucket's first event: it starts full, and this event takes a token. */	\
			fresh.credit = cap - RATELIMIT_NSEC_PER_SEC;				\
			fresh.last_ns = now;							\
			bpf_map_update_elem(&NAME(ratelimit), &key, &fresh, BPF_ANY);		\
			return true;								\
		}										\
		/* Refill for the time since the last event, capped so elapsed * rate fits. */	\
		elapsed = now > b->last_ns ? now - b->last_ns : 0;				\
		max_elapsed = cap / NAME(targ_rate_per_sec);					\
		if (elapsed > max_elapsed)							\
			elapsed = max_elapsed;							\
		credit = b->credit + elapsed * NAME(targ_rate_per_sec);				\
		if (credit > cap)								\
			credit = cap;								\
		b->last_ns = now;								\
		if (credit < RATELIMIT_NSEC_PER_SEC) {						\
			b->credit = credit;							\
			return false;								\
		}										\
		b->credit = credit - RATELIMIT_NSEC_PER_SEC;					\
		return true;									\
	}

#endif /* __OTEL_KUBESKOOP_RATELIMIT_BPF_H */
