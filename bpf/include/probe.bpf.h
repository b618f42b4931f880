/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The names of a probe's own globals (maps, settings, helpers the DECLARE_*() macros define), so
 * that several probes fit in one object.
 *
 *   NAME(x)   x in an object of one probe (bpf/<probe>.bpf.c); <probe>_x in the shared object
 *             (bpf/datapath.bpf.c), which defines PROBE_NAME(x) as <probe>_##x around each
 *             probe's section. User space strips the prefix (otel_kubeskoop/bpf/shared.py), so a
 *             probe reads "hists", "events"... wherever it lives.
 *   SETTING   a setting's qualifier: const volatile (.rodata, written between open and load) in a
 *             probe's own object; volatile (.data/.bss, written by user space whenever a probe
 *             starts) in the shared object, which is loaded once for all its probes.
 *   PROBE_SHARED  defined by the shared object: each probe declares its own event ring buffer
 *             (DECLARE_EVENTS()) instead of the one events.bpf.h declares for a probe alone.
 */
#ifndef __OTEL_KUBESKOOP_PROBE_BPF_H
#define __OTEL_KUBESKOOP_PROBE_BPF_H

#ifndef PROBE_NAME
#define PROBE_NAME(x) x
#endif
#define NAME(x) PROBE_NAME(x)

#ifndef SETTING
#define SETTING const volatile
#endif

#endif /* __OTEL_KUBESKOOP_PROBE_BPF_H */
