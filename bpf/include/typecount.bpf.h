/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Probes that count kernel events by type per namespace and send them one by one (tcpreset,
 * tcpretrans): one shape, the probe supplying its event types and record (BPF side only).
 *
 *   DECLARE_TYPECOUNT(entries)
 *       the setting targ_emit (send events), the "counters" hash of struct typecount_key
 *       (typecount.h) with "counters_full" (DECLARE_COUNTERS), and typecount_add(id, type):
 *       count one event of `type` in namespace `id`. With targ_emit, the caller then sends the
 *       event: event_reserve(struct <probe>_event, id.inum, type, aux), fill, event_submit().
 */
#ifndef __OTEL_KUBESKOOP_TYPECOUNT_BPF_H
#define __OTEL_KUBESKOOP_TYPECOUNT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "events.bpf.h"
#include "typecount.h"

#define DECLARE_TYPECOUNT(entries)							\
	const volatile bool targ_emit = false; /* the probe is in event.probes */	\
	DECLARE_COUNTERS(struct typecount_key, entries);				\
	static __always_inline void typecount_add(struct netns_id id, __u32 type)	\
	{										\
		struct typecount_key key = {};						\
											\
		key.netns = id.inum;							\
		key.netns_cookie = id.cookie;						\
		key.type = type;							\
		counters_add(&key);							\
	}

#endif /* __OTEL_KUBESKOOP_TYPECOUNT_BPF_H */
