/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel field reads that suit each program type (BPF side only).
 *
 *   KREAD(btf, src, a, b, ...)            src->a->b...
 *   KREAD_BITFIELD(btf, src, field)       src->field, a bitfield before some kernel version
 *
 *   KREAD_AS(btf, type, src, a, b, ...)   ((type *)src)->a->b...: src read as another type (a
 *                                         struct sock as the struct tcp_sock it is)
 *   KREAD_BYTES(btf, dst, src, size)      size bytes at a kernel address that is no typed object
 *                                         (packet headers) into dst; 0, or a probe read's error
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
 * read as a struct tcp_sock). bpf_rdonly_cast() (Linux 6.2, commit a35b9af4ec2c "bpf: Add a
 * kfunc for generic type cast"; the verifier turns the call into a register move) gives the
 * pointer as the other type, read-only and fault-safe, so KREAD_AS() is plain loads too. With
 * type id 0 it gives read-only memory of any size, for KREAD_BYTES() (Linux 6.17; where the
 * verifier refuses that, the tp_btf program fails to load and the loader takes the hook's
 * classic tracepoint, whose reads are probe reads).
 */
#ifndef __OTEL_KUBESKOOP_KREAD_BPF_H
#define __OTEL_KUBESKOOP_KREAD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

#define KREAD(btf, ...) ((btf) ? ___arrow(__VA_ARGS__) : BPF_CORE_READ(__VA_ARGS__))

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#define KREAD_AS(btf, type, src, ...)							\
	((btf) ? ___arrow(((type *)bpf_rdonly_cast((src), bpf_core_type_id_kernel(type))),	\
			  __VA_ARGS__)							\
	       : BPF_CORE_READ((type *)(src), __VA_ARGS__))

#define KREAD_BYTES(btf, dst, src, size)						\
	((btf) ? (__builtin_memcpy((dst), bpf_rdonly_cast((src), 0), (size)), 0)		\
	       : bpf_probe_read_kernel((dst), (size), (src)))

#define KREAD_BITFIELD(btf, src, field)							\
	((btf) ? BPF_CORE_READ_BITFIELD(src, field) : BPF_CORE_READ_BITFIELD_PROBED(src, field))

#endif /* __OTEL_KUBESKOOP_KREAD_BPF_H */
