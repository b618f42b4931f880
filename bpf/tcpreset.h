/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * tcpreset: the kernel <-> user-space contract of tcpreset.bpf.c: TCP resets sent and received,
 * counted per (namespace, type) in "counters" (struct typecount_key, typecount.h) and, when
 * events are on, sent one by one. Mirrored in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __TCPRESET_H
#define __TCPRESET_H

#include "events.h"
#include "tuple.h"
#include "typecount.h"

#define TCPRESET_MAX_COUNTERS 16384

/* tcpreset_event.reason when the kernel gave no enum sk_rst_reason. */
enum tcpreset_reason {
	TCPRESET_REASON_NONE = 0xffffffffU,
};

/* event_header.type, and typecount_key.type: upstream KubeSkoop's four reset types. */
enum tcpreset_type {
	TCPRESET_NOSOCK = 1,  /* a RST answering a packet that matched no socket */
	TCPRESET_PROCESS = 2, /* a RST answering a packet that matched a socket (any state) */
	TCPRESET_ACTIVE = 3,  /* a RST the stack sent on its own: abort, linger 0, timeout... */
	TCPRESET_RECEIVE = 4, /* a socket received a valid RST */
};

/*
 * A ring-buffer record: one reset. hdr.aux: the socket's TCP state (0: no socket). The tuple is
 * the connection as this namespace sees it: source = the local end, destination = the peer (for
 * a sent reset, the RST's own direction; nosock and process take it from the packet answered).
 */
struct tcpreset_event {
	struct event_header hdr;
	struct flow_tuple tuple;
	__u32 reason; /* enum sk_rst_reason (sent resets, Linux 6.10+); TCPRESET_REASON_NONE */
};

#endif /* __TCPRESET_H */
