/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel field reads that suit each program type (BPF side only).
 *
 *   KREAD(btf, src, a, b, ...)            src->a->b...
 *   KREAD_BITFIELD(btf, src, field)       src->field, a bitfield before some kernel version
 *
 *   KREAD_TCP(btf, sk, field)             field of the struct tcp_sock that sk (a struct sock) is;
 *                                         0 where sk is no full TCP socket (btf only)
 *   KREAD_BYTES(dst, src, size)           size bytes at a kernel address that is no typed object
 *                                         (packet headers) into dst; 0, or the probe read's error
 *
 * btf is a constant the program passes down its __always_inline handlers: true in tp_btf and
 * fentry programs, whose arguments are BTF-typed pointers; then the read is a plain load, which
 * the verifier turns into a fault-safe load (BPF_PROBE_MEM; a fault reads as zeros) walking the
 * same types. False in classic tracepoint and kprobe programs, whose pointers are plain numbers;
 * then it is BPF_CORE_READ(), one bpf_probe_read_kernel() call per pointer hop. Both are CO-RE
 * relocated. The per-packet hooks read a dozen fields each: as plain loads they cost a few
 * nanoseconds instead of about 25 ns per helper call (bpftool prog run, 2M runs, this machine).
 *
 * A plain load must walk the pointer's own type: the verifier refuses a C cast (a struct sock
 * read as a struct tcp_sock). bpf_skc_to_tcp_sock() (Linux 5.9, commit 478cfbdf5f13 "bpf: Add
 * bpf_skc_to_{tcp,tcp_timewait,tcp_request}_sock() helpers") gives the same socket typed as a
 * struct tcp_sock, so KREAD_TCP() is one helper call and plain loads. Header bytes have no type
 * to walk: they stay one probe read each (the kfunc bpf_rdonly_cast() would make them loads,
 * but only from Linux 6.17, and a program that calls a kfunc the kernel lacks does not load).
 */
#ifndef __OTEL_KUBESKOOP_KREAD_BPF_H
#define __OTEL_KUBESKOOP_KREAD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

#define KREAD(btf, ...) ((btf) ? ___arrow(__VA_ARGS__) : BPF_CORE_READ(__VA_ARGS__))

#define KREAD_TCP(btf, sk, field)								\
	((btf) ? ({ const struct tcp_sock *__tp = bpf_skc_to_tcp_sock((void *)(sk));		\
		    __tp ? __tp->field : 0; })						\
	       : BPF_CORE_READ((struct tcp_sock *)(sk), field))

#define KREAD_BYTES(dst, src, size) bpf_probe_read_kernel((dst), (size), (src))

#define KREAD_BITFIELD(btf, src, field)							\
	((btf) ? BPF_CORE_READ_BITFIELD(src, field) : BPF_CORE_READ_BITFIELD_PROBED(src, field))

#endif /* __OTEL_KUBESKOOP_KREAD_BPF_H */
