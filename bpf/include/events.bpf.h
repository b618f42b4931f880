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
 * The ring buffer is "events"; user space may resize it (a power-of-two multiple of the page
 * size) between open and load.
 */
#ifndef __OTEL_KUBESKOOP_EVENTS_BPF_H
#define __OTEL_KUBESKOOP_EVENTS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "ratelimit.bpf.h"

#define EVENTS_RINGBUF_BYTES (256 * 1024)

/*
 * Make clang emit BTF for a type that only user space reads (a ring-buffer record, an enum of
 * event types), so that its Python mirror is generated from the object (bpf/README.md). It
 * costs one pointer in .rodata and nothing at run time.
 */
#define BTF_EXPORT(T, name) T *const volatile __btf_export_##name = 0

BTF_EXPORT(struct event_header, event_header);
BTF_EXPORT(enum event_loss_reason, event_loss_reason);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EVENT_LOSS__MAX);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

static __always_inline void event_count_loss(enum event_loss_reason reason)
{
	__u32 key = reason;
	__u64 *n;

	n = bpf_map_lookup_elem(&losses, &key);
	if (n)
		*n += 1;
}

static __always_inline void *event_reserve_size(__u64 size, __u32 netns, __u16 type, __u16 aux)
{
	struct event_header *hdr;

	if (!ratelimit_allow(netns, type)) {
		event_count_loss(EVENT_LOSS_RATE_LIMITED);
		return NULL;
	}
	hdr = bpf_ringbuf_reserve(&events, size, 0);
	if (!hdr) {
		event_count_loss(EVENT_LOSS_RINGBUF_FULL);
		return NULL;
	}
	/* Zero the whole record: padding and unset fields must not carry stale ring-buffer bytes. */
	__builtin_memset(hdr, 0, size);
	hdr->ts_ns = bpf_ktime_get_ns();
	hdr->netns = netns;
	hdr->type = type;
	hdr->aux = aux;
	return hdr;
}

/* Reserve a record of type T (whose first member is a struct event_header); NULL when refused. */
#define event_reserve(T, netns, type, aux) \
	((T *)event_reserve_size(sizeof(T), (netns), (type), (aux)))

static __always_inline void event_submit(void *record)
{
	bpf_ringbuf_submit(record, 0);
}

#endif /* __OTEL_KUBESKOOP_EVENTS_BPF_H */
