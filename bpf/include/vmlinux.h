/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Kernel types for CO-RE programs: include the vmlinux.h generated for the target architecture
 * (bpf/scripts/gen-vmlinux.sh). The Makefile passes -D__TARGET_ARCH_<arch>, which bpf_tracing.h
 * also needs for PT_REGS_* in kprobe programs.
 */
#ifndef __OTEL_KUBESKOOP_VMLINUX_H
#define __OTEL_KUBESKOOP_VMLINUX_H

#if defined(__TARGET_ARCH_x86)
#include "x86/vmlinux.h"
#else
#error "no vmlinux.h for this architecture: run bpf/scripts/gen-vmlinux.sh on it and add it here"
#endif

#endif /* __OTEL_KUBESKOOP_VMLINUX_H */
