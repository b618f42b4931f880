/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel <-> user-space contract of the latency probes (netiftxlat, softirq, biolatency,
 * virtcmdlatency): the log2 histogram each keeps per key in its "hists" map, and the counters of
 * its in-flight timestamp map. Types and constants only; mirrored in
 * otel_kubeskoop/bpf/generated/common.py (LatencyHist, InflightStat). Include vmlinux.h (BPF)
 * first for __u64 & co.
 */
#ifndef __OTEL_KUBESKOOP_LATENCY_H
#define __OTEL_KUBESKOOP_LATENCY_H

/*
 * Buckets: slot i counts intervals of [2^i, 2^(i+1)) nanoseconds (slot 0 also counts 0 ns); the
 * last slot, [2^35 ns = 34.4 s, inf), is open-ended. User space exports them as an OTel histogram
 * in seconds with bounds 2^(i+1) ns (otel_kubeskoop.probe.log2_bounds(1e-9, LATENCY_SLOTS)).
 */
#define LATENCY_SLOTS 36

/*
 * A histogram, cumulative since its key was created. slow[] counts intervals strictly above the
 * probe's two fixed thresholds (the upstream KubeSkoop counters, e.g. >10 ms and >100 ms; a probe
 * with one threshold leaves slow[1] at 0): those thresholds are not bucket bounds, so they are
 * counted in the kernel rather than derived from the buckets.
 */
struct latency_hist {
	__u64 slots[LATENCY_SLOTS];
	__u64 sum_ns; /* sum of every interval counted, nanoseconds */
	__u64 slow[2];
};

/*
 * The state of a "hists" slot (latency.bpf.h DECLARE_LATENCY_HISTS), its first 8 bytes: user space
 * reads the READY ones and marks those of namespaces that are gone DELETED. A key is looked for
 * in the LATENCY_HIST_PROBES slots from its home slot on.
 */
enum hist_slot_state {
	HIST_FREE = 0,    /* never used: the search for a key ends here */
	HIST_CLAIMED = 1, /* a CPU is putting a new key here */
	HIST_READY = 2,   /* holds a key and its histogram */
	HIST_DELETED = 3, /* its key is gone (user space): a new key may take it */
};

#define LATENCY_HIST_PROBES 8

/*
 * Index into the per-CPU "inflight_stats" array: what happened to the entries of the probe's
 * in-flight table (start records waiting for their end point; latency.bpf.h DECLARE_INFLIGHT).
 * Every way into and out of the table is counted, so
 *     started = ended + discarded + evicted + (entries in the table now).
 */
enum inflight_stat {
	INFLIGHT_STARTED = 0,   /* a new entry was inserted */
	INFLIGHT_REPLACED = 1,  /* a start found its key already there and overwrote it */
	INFLIGHT_ENDED = 2,     /* an end point found its entry and removed it (one measurement) */
	INFLIGHT_DISCARDED = 3, /* removed without a measurement (the packet was freed, say) */
	INFLIGHT_UNMATCHED = 4, /* an end point found no entry (started before attach, or evicted) */
	INFLIGHT_EVICTED = 5,   /* a start took the slot of another key, whose start is lost */
	INFLIGHT__MAX = 6,
};

#endif /* __OTEL_KUBESKOOP_LATENCY_H */
