/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel field reads that suit each program type (BPF side only).
 *
 *   KREAD(btf, src, a, b, ...)            src->a->b...
 *   KREAD_BITFIELD(btf, src, field)       src->field, a bitfield before some kernel version
 *
 * btf is a constant the program passes down its __always_inline handlers: true in tp_btf and
 * fentry programs, whose arguments are BTF-typed pointers; then the read is a plain load, which
 * the verifier turns into a fault-safe load (BPF_PROBE_MEM) walking the same types. False in
 * classic tracepoint and kprobe programs, whose pointers are plain numbers; then it is
 * BPF_CORE_READ(), one bpf_probe_read_kernel() call per pointer hop. Both are CO-RE relocated.
 * The per-packet hooks read a dozen fields each: as plain loads they cost a few nanoseconds
 * instead of about 10 ns per helper call (measured here, bench/datapath.py).
 *
 * A plain load must walk the pointer's own type: a struct sock read as a struct tcp_sock (a C
 * cast) is refused by the verifier, so such reads stay BPF_CORE_READ().
 */
#ifndef __OTEL_KUBESKOOP_KREAD_BPF_H
#define __OTEL_KUBESKOOP_KREAD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

#define KREAD(btf, ...) ((btf) ? ___arrow(__VA_ARGS__) : BPF_CORE_READ(__VA_ARGS__))

#define KREAD_BITFIELD(btf, src, field)							\
	((btf) ? BPF_CORE_READ_BITFIELD(src, field) : BPF_CORE_READ_BITFIELD_PROBED(src, field))

#endif /* __OTEL_KUBESKOOP_KREAD_BPF_H */
