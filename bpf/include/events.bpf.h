/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Ring-buffer events with exact loss accounting.
 *
 * Every record starts with struct event_header (events.h). event_reserve() applies the
 * per-(netns, type) rate limit (ratelimit.bpf.h), reserves the record, zeroes it and fills the
 * header; event_submit() hands it to user space. A refused event is counted in the per-CPU
 * "losses" array under its reason, so user space can report
 *     delivered + losses[RINGBUF_FULL] + losses[RATE_LIMITED] == events the kernel saw.
 *
 * The ring buffer is "events" (NAME(events) in the shared object, probe.bpf.h); user space may
 * resize a probe's own (a power-of-two multiple of the page size) between open and load: one
 * page without events, else the probe's ringBufferKiB (otel_kubeskoop/probes/_bpf.py
 * RingEventArgs, whose default is EVENTS_RINGBUF_BYTES).
 */
#ifndef __OTEL_KUBESKOOP_EVENTS_BPF_H
#define __OTEL_KUBESKOOP_EVENTS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "probe.bpf.h"
#include "ratelimit.bpf.h"

#define EVENTS_RINGBUF_BYTES (256 * 1024)

/*
 * Make clang emit BTF for a type that only user space reads (a ring-buffer record, an enum of
 * event types), so that its Python mirror is generated from the object (bpf/README.md). It
 * costs one pointer in .rodata and nothing at run time.
 */
#define BTF_EXPORT(T, name) __BTF_EXPORT(T, name, __COUNTER__)
/* Numbered, so that probes sharing an object may each export a type they all use. */
#define __BTF_EXPORT(T, name, n) ___BTF_EXPORT(T, name, n)
#define ___BTF_EXPORT(T, name, n) T *const volatile __btf_export_##name##_##n = 0

BTF_EXPORT(struct event_header, event_header);
BTF_EXPORT(enum event_loss_reason, event_loss_reason);

/*
 * One probe's ring buffer NAME(events), its NAME(losses) and rate limit, and
 * NAME(event_reserve_size)(), which event_reserve() calls. Declared here for an object of one
 * probe; in the shared object each probe declares its own (probe.bpf.h).
 */
#define DECLARE_EVENTS()									\
	DECLARE_RATELIMIT();									\
	struct {										\
		__uint(type, BPF_MAP_TYPE_RINGBUF);						\
		__uint(max_entries, EVENTS_RINGBUF_BYTES);					\
	} NAME(events) SEC(".maps");								\
	struct {										\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);					\
		__uint(max_entries, EVENT_LOSS__MAX);						\
		__type(key, __u32);								\
		__type(value, __u64);								\
	} NAME(losses) SEC(".maps");								\
	static __always_inline void NAME(event_count_loss)(enum event_loss_reason reason)	\
	{											\
		__u32 key = reason;								\
		__u64 *n;									\
												\
		n = bpf_map_lookup_elem(&NAME(losses), &key);					\
		if (n)										\
			*n += 1;								\
	}											\
	static __always_inline void *NAME(event_reserve_size)(__u64 size, __u32 netns, __u16 type,	\
							      __u16 aux)			\
	{											\
		struct event_header *hdr;							\
												\
		if (!NAME(ratelimit_allow)(netns, type)) {					\
			NAME(event_count_loss)(EVENT_LOSS_RATE_LIMITED);			\
			return NULL;								\
		}										\
		hdr = bpf_ringbuf_reserve(&NAME(events), size, 0);				\
		if (!hdr) {									\
			NAME(event_count_loss)(EVENT_LOSS_RINGBUF_FULL);			\
			return NULL;								\
		}										\
		/* Zero it all: padding and unset fields must not carry stale bytes. */		\
		__builtin_memset(hdr, 0, size);							\
		hdr->ts_ns = bpf_ktime_get_ns();						\
		hdr->netns = netns;								\
		hdr->type = type;								\
		hdr->aux = aux;									\
		return hdr;									\
	}

/* Reserve a record of type T (whose first member is a struct event_header); NULL when refused. */
#define event_reserve(T, netns, type, aux) \
	((T *)NAME(event_reserve_size)(sizeof(T), (netns), (type), (aux)))

static __always_inline void event_submit(void *record)
{
	bpf_ringbuf_submit(record, 0);
}

#ifndef PROBE_SHARED
DECLARE_EVENTS();
#endif

#endif /* __OTEL_KUBESKOOP_EVENTS_BPF_H */
