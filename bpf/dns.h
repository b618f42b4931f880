/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * dns: the kernel <-> user-space contract of dns.bpf.h: DNS queries (UDP and TCP, server port 53)
 * matched with their responses by namespace, addresses, ports and transaction id. Each answer
 * adds its latency to a log2 histogram per (namespace, server, transport, response code)
 * (latency.h); queries still waiting are in "pending", which user space sweeps for timeouts;
 * with events on, SERVFAIL and slow answers are sent (timeouts are user space's). With query
 * names on, answers are also counted per (namespace, name, response code) in "names". Mirrored
 * in otel_kubeskoop/bpf/generated/ (make).
 */
#ifndef __DNS_H
#define __DNS_H

#include "events.h"
#include "tuple.h"
#include "latency.h"

#define DNS_MAX_HISTS 4096    /* (namespace, server, transport, rcode) */
#define DNS_MAX_PENDING 8192  /* queries waiting for their answer */
#define DNS_MAX_NAMES 4096    /* (namespace, name, rcode), query names on */
#define DNS_NAME_BYTES 64     /* bytes of the question's wire-format name kept */
#define DNS_PORT 53

/* Key of the "hists" map (value: struct latency_hist; slow[0]: answers above dns_targ_slow_ns). */
struct dns_key {
	__u32 netns;
	__u32 netns_cookie; /* low 32 bits of the namespace's never-reused id (netns.bpf.h) */
	__u8 server[16];    /* the server's address as the client sent to it, network byte order */
	__u16 family;       /* AF_INET or AF_INET6 */
	__u8 transport;     /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 rcode;         /* the response code, 0-15 (RFC 1035 4.1.1) */
};

/* Key of "pending": one query, as its response will carry it back (swapped). */
struct dns_pending_key {
	__u8 client[16];
	__u8 server[16];
	__u32 netns;
	__u16 client_port; /* host byte order */
	__u16 server_port;
	__u16 id;          /* the transaction id */
	__u8 family;
	__u8 transport;
};

/* Value of "pending": when the query left its socket, and its name when names are on. */
struct dns_pending {
	__u64 ts_ns;        /* bpf_ktime_get_ns() at net:net_dev_queue */
	__u32 netns_cookie;
	__u16 name_len;     /* bytes of name that belong to the message (0: names off) */
	__u16 pad;
	__u8 name[DNS_NAME_BYTES]; /* the question's name in wire format (length-prefixed labels) */
};

/* Key of "names" (value: __u64 answers), query names on. */
struct dns_name_key {
	__u32 netns;
	__u32 netns_cookie;
	__u8 name[DNS_NAME_BYTES]; /* as in struct dns_pending, zero past name_len */
	__u8 rcode;
	__u8 pad[3];
};

/* Index of the per-CPU "stats" array. */
enum dns_stat {
	DNS_STAT_QUERIES = 0,      /* queries put into "pending" */
	DNS_STAT_REPEATED = 1,     /* a query whose key was pending already (a retransmission: the first start is kept) */
	DNS_STAT_PENDING_FULL = 2, /* queries not followed: "pending" was full */
	DNS_STAT_ANSWERED = 3,     /* responses matched with their query */
	DNS_STAT_UNMATCHED = 4,    /* responses with no query pending in their namespace (forwarded through it, or late) */
	DNS_STAT_NONLINEAR = 5,    /* TCP segments from or to port 53 whose DNS header is not in the packet's linear data */
	DNS_STAT_NAMES_FULL = 6,   /* answers not counted by name: "names" was full */
	DNS_STAT__MAX = 7,
};

/* event_header.type; aux is the response code (timeouts: 0). */
enum dns_event_type {
	DNS_EVENT_SERVFAIL = 1, /* an answer with SERVFAIL */
	DNS_EVENT_SLOW = 2,     /* an answer slower than dns_targ_slow_ns */
	DNS_EVENT_TIMEOUT = 3,  /* no answer within the timeout (made by user space's sweep) */
};

/* A ring-buffer record: one answer. Source = the client, destination = the server. */
struct dns_event {
	struct event_header hdr;
	struct flow_tuple tuple;
	__u64 latency_ns;
	__u16 id;
	__u16 name_len;
	__u32 pad;
	__u8 name[DNS_NAME_BYTES];
};

#endif /* __DNS_H */
