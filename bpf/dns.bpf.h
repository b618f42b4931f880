// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * dns: DNS latency and response codes per namespace and server (see dns.h). Part of the shared
 * object (datapath.bpf.c), whose hooks call:
 *
 *   queue  (net:net_dev_queue; __dev_queue_xmit) dns_queue(): a packet a local socket sends
 *          (skb->sk set: a packet forwarded through a namespace has none, so a query is counted
 *          once, in the namespace of the socket that sent it) to port 53, UDP or TCP, whose DNS
 *          header says "query": its key (namespace, addresses, ports, transport, transaction id)
 *          and the time go into "pending" (a HASH: a retransmission with the same key keeps the
 *          first start; a full table is counted, never evicted).
 *   rx     (net:netif_receive_skb; ip_rcv) dns_rx(): a packet from port 53 whose header says
 *          "response", looked up in "pending" under the namespace of the device it arrived on:
 *          the interval goes to hists[(namespace, server, transport, rcode)], and the entry is
 *          deleted. NAT: both ends see the addresses as the client's namespace does (a query to
 *          a Service's ClusterIP is answered from the ClusterIP there, as the translation back
 *          happens before the packet enters the pod's namespace).
 *
 * TCP: the message follows a 2-byte length at the start of a segment's payload (RFC 1035
 * 4.2.2); segments without payload (handshake, ACKs) are skipped. TCP puts the payload in page
 * fragments, out of a probe read's reach: the first tp_btf programs read it through a dynptr
 * over the skb; the others count it (DNS_STAT_NONLINEAR), not followed. The first message of a segment only.
 *
 * Queries never answered stay in "pending" until user space sweeps them (timeouts). SERVFAIL and
 * answers slower than dns_targ_slow_ns are sent, with dns_targ_emit, through the rate-limited ring
 * buffer (events.bpf.h). With dns_targ_names, the question's name (its first DNS_NAME_BYTES
 * bytes, wire format) travels with the query, into the events and "names".
 */
#ifndef __DNS_BPF_H
#define __DNS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kread.bpf.h"
#include "maps.bpf.h"
#include "netns.bpf.h"
#include "tuple.bpf.h"
#include "events.bpf.h"
#include "latency.bpf.h"
#include "hookrun.bpf.h"
#include "dns.h"

/*
 * Packet bytes in page fragments (TCP's payload), which a probe read cannot reach: through a
 * dynptr over the skb (the handlers' frags argument), which tp_btf programs may make where the
 * kernel allows it (this one, 6.18, does). A program calling it does not load on a kernel that
 * refuses it there, so each shared hook that runs dns has a tp_btf variant without it
 * (datapath.bpf.c, "_linear_"), tried next; it and the classic tracepoint and kprobe programs
 * count such messages instead (DNS_STAT_NONLINEAR).
 */
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym __weak;

#define DNS_HEADER_BYTES 12
#define DNS_QR 0x8000       /* flags: a response */
#define DNS_RCODE 0x000f    /* flags: the response code */

/* Settings (user space writes them before it sets the probe's bit, datapath.bpf.c). */
SETTING bool dns_targ_emit = false;   /* send events */
SETTING bool dns_targ_names = false;  /* keep query names: events and "names" */
SETTING __u64 dns_targ_slow_ns = 0;   /* answers above this are slow (hists slow[0], events) */
SETTING __u64 dns_targ_since_ns = 0;  /* the probe started: older pending queries are stale */

DECLARE_EVENTS();
DECLARE_LATENCY_HISTS(struct dns_key, struct latency_hist, DNS_MAX_HISTS);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNS_MAX_PENDING);
	__type(key, struct dns_pending_key);
	__type(value, struct dns_pending);
} dns_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNS_MAX_NAMES);
	__type(key, struct dns_name_key);
	__type(value, __u64);
} dns_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} dns_stats SEC(".maps");

/*
 * Per-CPU room for the records too large for the stack the shared programs share; one part per
 * hook, so that nothing is shared should one hook's program ever interrupt the other's (both run
 * with bottom halves off, so they do not now).
 */
struct dns_scratch {
	struct dns_pending query;  /* queue */
	struct dns_pending answer; /* rx */
	struct dns_name_key name;  /* rx */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
} dns_scratch SEC(".maps");

BTF_EXPORT(struct dns_event, dns_event);
BTF_EXPORT(enum dns_event_type, dns_event_type);
BTF_EXPORT(enum dns_stat, dns_stat);
BTF_EXPORT(struct flow_tuple, flow_tuple);
BTF_EXPORT(struct latency_hist, latency_hist);

/* A DNS message in a packet, as parsed by dns_parse(). */
struct dns_msg {
	struct dns_pending_key key;
	__u16 flags;
	__u16 name_len;                /* bytes of question readable, up to DNS_NAME_BYTES */
	const unsigned char *question; /* the question's kernel address; NULL: in page fragments */
	__u32 question_off;            /* its offset from skb->data */
};

/* len bytes at skb->data + off into dst, fragments included (programs built with frags only). */
static __always_inline bool dns_read_skb(const struct sk_buff *skb, __u32 off, void *dst,
					 __u32 len)
{
	struct bpf_dynptr dp;

	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &dp))
		return false;
	return !bpf_dynptr_read(dst, len, &dp, off, 0);
}

static __always_inline void dns_count(enum dns_stat stat)
{
	__u32 key = stat;
	__u64 *n = bpf_map_lookup_elem(&dns_stats, &key);

	if (n)
		*n += 1;
}

/*
 * Whether the IP packet at `ip` (skb->data + ip_off; its linear data ends at `end`; l3:
 * skb->protocol, host order) carries a DNS query (`response` false: to port 53) or response
 * (true: from port 53); if so, m holds its key, client and server as the query has them, and
 * where its question is. One probe read of the IP header and ports for any packet; the DNS header
 * is read for port 53 only, from the page fragments when it is there and frags allows.
 */
static __always_inline bool dns_parse(bool frags, const struct sk_buff *skb, const unsigned char *ip,
				      __u32 ip_off, const unsigned char *end, __u16 l3,
				      bool response, struct dns_msg *m)
{
	__u8 h[44]; /* the IP header without options, and the ports */
	__u32 l4, total, msg, room;
	__be16 ports[2], word[2];
	__u16 sport, dport;
	__u8 proto, doff;

	if (l3 == TUPLE_ETH_P_IP) {
		if (bpf_probe_read_kernel(h, 24, ip) || (h[0] >> 4) != 4)
			return false;
		proto = h[9];
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return false;
		if (((h[6] << 8) | h[7]) & TUPLE_IP_OFFSET_MASK)
			return false; /* a later fragment */
		l4 = (h[0] & 0x0f) * 4;
		total = (h[2] << 8) | h[3];
		if (l4 == 20)
			__builtin_memcpy(ports, &h[20], 4);
		else if (bpf_probe_read_kernel(ports, 4, ip + l4))
			return false;
		m->key.family = AF_INET;
		__builtin_memcpy(response ? m->key.server : m->key.client, &h[12], 4);
		__builtin_memcpy(response ? m->key.client : m->key.server, &h[16], 4);
	} else if (l3 == TUPLE_ETH_P_IPV6) {
		if (bpf_probe_read_kernel(h, 44, ip) || (h[0] >> 4) != 6)
			return false;
		proto = h[6]; /* extension headers are not walked */
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return false;
		l4 = 40;
		total = 40 + ((h[4] << 8) | h[5]);
		__builtin_memcpy(ports, &h[40], 4);
		m->key.family = AF_INET6;
		__builtin_memcpy(response ? m->key.server : m->key.client, &h[8], 16);
		__builtin_memcpy(response ? m->key.client : m->key.server, &h[24], 16);
	} else {
		return false;
	}
	sport = bpf_ntohs(ports[0]);
	dport = bpf_ntohs(ports[1]);
	if ((response ? sport : dport) != DNS_PORT)
		return false;
	m->key.transport = proto;
	m->key.client_port = response ? dport : sport;
	m->key.server_port = DNS_PORT;
	if (proto == IPPROTO_UDP) {
		msg = l4 + 8;
	} else {
		if (bpf_probe_read_kernel(&doff, 1, ip + l4 + 12))
			return false;
		msg = l4 + (doff >> 4) * 4 + 2; /* after the 2-byte length */
	}
	if (msg + DNS_HEADER_BYTES > total)
		return false; /* no message: a TCP handshake or ACK, or a runt */
	room = total - msg - DNS_HEADER_BYTES;
	m->question_off = ip_off + msg + DNS_HEADER_BYTES;
	if (ip + msg + DNS_HEADER_BYTES <= end) {
		if (bpf_probe_read_kernel(word, 4, ip + msg))
			return false;
		m->question = ip + msg + DNS_HEADER_BYTES;
		if (room > end - m->question)
			room = end - m->question;
	} else if (!frags || !dns_read_skb(skb, ip_off + msg, word, 4)) {
		dns_count(DNS_STAT_NONLINEAR);
		return false;
	}
	m->key.id = bpf_ntohs(word[0]);
	m->flags = bpf_ntohs(word[1]);
	if (!!(m->flags & DNS_QR) != response)
		return false;
	m->name_len = room < DNS_NAME_BYTES ? room : DNS_NAME_BYTES;
	return true;
}

/* The end of skb's linear data, which starts at data. */
static __always_inline const unsigned char *dns_linear_end(bool btf, const struct sk_buff *skb,
							   const unsigned char *data)
{
	return data + (KREAD(btf, skb, len) - KREAD(btf, skb, data_len));
}

/* hook "queue": a packet is handed to a device; one a local socket sends may be a query. */
static __always_inline void dns_queue(bool btf, bool frags, const struct sk_buff *skb,
				      struct hook_run *run)
{
	const unsigned char *head, *data;
	struct dns_scratch *scratch;
	struct dns_msg m = {};
	const struct sock *sk;
	struct dns_pending *p;
	struct netns_id id;
	__u32 zero = 0;
	__u16 nh;
	long err;

	if (!skb)
		return;
	sk = KREAD(btf, skb, sk);
	if (!sk)
		return;
	/* A connected socket to port 53 (TCP, connected UDP), or any UDP socket; cheap loads first. */
	if (KREAD(btf, sk, __sk_common.skc_dport) != bpf_htons(DNS_PORT) &&
	    KREAD_BITFIELD(btf, sk, sk_protocol) != IPPROTO_UDP)
		return;
	head = KREAD(btf, skb, head);
	data = KREAD(btf, skb, data);
	nh = KREAD(btf, skb, network_header);
	if (!head || nh == (__u16)~0U)
		return;
	if (!dns_parse(frags, skb, head + nh, head + nh - data, dns_linear_end(btf, skb, data),
		       bpf_ntohs(KREAD(btf, skb, protocol)), false, &m))
		return;
	scratch = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!scratch)
		return;
	p = &scratch->query;
	id = sk_netns_id(btf, sk);
	m.key.netns = id.inum;
	p->ts_ns = hook_now(run);
	p->netns_cookie = id.cookie;
	p->name_len = 0;
	__builtin_memset(p->name, 0, DNS_NAME_BYTES);
	if (dns_targ_names) {
		p->name_len = m.name_len;
		if (m.question)
			bpf_probe_read_kernel(p->name, DNS_NAME_BYTES, m.question);
		else if (frags && (m.name_len > DNS_NAME_BYTES ||
				 !dns_read_skb(skb, m.question_off, p->name, m.name_len)))
			p->name_len = 0;
	}
	err = bpf_map_update_elem(&dns_pending, &m.key, p, BPF_NOEXIST);
	if (!err)
		dns_count(DNS_STAT_QUERIES);
	else if (err == -EEXIST)
		dns_count(DNS_STAT_REPEATED);
	else
		dns_count(DNS_STAT_PENDING_FULL);
}

/* Count an answer under its name ("names"): bytes past name_len zeroed, so one name is one key. */
static __always_inline void dns_count_name(struct dns_scratch *scratch, __u32 netns, __u8 rcode)
{
	const struct dns_pending *p = &scratch->answer;
	struct dns_name_key *key = &scratch->name;
	__u32 i;

	key->netns = netns;
	key->netns_cookie = p->netns_cookie;
	key->rcode = rcode;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	_Pragma("unroll")
	for (i = 0; i < DNS_NAME_BYTES; i++)
		key->name[i] = i < p->name_len ? p->name[i] : 0;
	if (!shared_counter_add(&dns_names, key, 1))
		dns_count(DNS_STAT_NAMES_FULL);
}

static __always_inline void dns_emit(const struct dns_msg *m, const struct dns_pending *p,
				     __u32 type, __u8 rcode, __u64 latency)
{
	struct dns_event *e = event_reserve(struct dns_event, m->key.netns, type, rcode);

	if (!e)
		return;
	e->tuple.family = m->key.family;
	e->tuple.protocol = m->key.transport;
	__builtin_memcpy(e->tuple.saddr, m->key.client, 16);
	__builtin_memcpy(e->tuple.daddr, m->key.server, 16);
	e->tuple.sport = m->key.client_port;
	e->tuple.dport = m->key.server_port;
	e->latency_ns = latency;
	e->id = m->key.id;
	e->name_len = p->name_len;
	__builtin_memcpy(e->name, p->name, DNS_NAME_BYTES);
	event_submit(e);
}

/* hook "rx": a packet enters the stack; one from port 53 may answer a pending query. */
static __always_inline void dns_rx(bool btf, bool frags, const struct sk_buff *skb,
				   struct hook_run *run)
{
	struct dns_pending *found, *p;
	struct dns_scratch *scratch;
	const unsigned char *data;
	struct dns_msg m = {};
	struct latency_hist *h;
	struct netns_id id;
	struct dns_key hk = {};
	__u64 now, latency;
	__u32 zero = 0;
	__u8 rcode;

	if (!skb)
		return;
	data = KREAD(btf, skb, data);
	if (!dns_parse(frags, skb, data, 0, dns_linear_end(btf, skb, data),
		       bpf_ntohs(KREAD(btf, skb, protocol)), true, &m))
		return;
	id = skb_netns_id(btf, skb);
	m.key.netns = id.inum;
	found = bpf_map_lookup_elem(&dns_pending, &m.key);
	if (!found) {
		dns_count(DNS_STAT_UNMATCHED);
		return;
	}
	scratch = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!scratch)
		return;
	p = &scratch->answer;
	*p = *found;
	if (bpf_map_delete_elem(&dns_pending, &m.key))
		return; /* another CPU matched it first */
	if (p->ts_ns < dns_targ_since_ns)
		return; /* from before the probe started */
	now = hook_now(run);
	latency = now > p->ts_ns ? now - p->ts_ns : 0;
	rcode = m.flags & DNS_RCODE;
	dns_count(DNS_STAT_ANSWERED);
	hk.netns = id.inum;
	hk.netns_cookie = p->netns_cookie;
	__builtin_memcpy(hk.server, m.key.server, 16);
	hk.family = m.key.family;
	hk.transport = m.key.transport;
	hk.rcode = rcode;
	h = dns_hists_lookup(&hk);
	if (h)
		latency_add(h, latency, dns_targ_slow_ns, 0);
	if (dns_targ_names)
		dns_count_name(scratch, id.inum, rcode);
	if (!dns_targ_emit)
		return;
	if (rcode == 2) /* SERVFAIL */
		dns_emit(&m, p, DNS_EVENT_SERVFAIL, rcode, latency);
	else if (dns_targ_slow_ns && latency > dns_targ_slow_ns)
		dns_emit(&m, p, DNS_EVENT_SLOW, rcode, latency);
}

#endif /* __DNS_BPF_H */
