# SPDX-License-Identifier: Apache-2.0
"""What each BPF program costs and misses, from the kernel's ``struct bpf_prog_info``.

Run count and run time are the kernel's program statistics (:class:`ProgramStats`).

The kernel counts them only while statistics are enabled. ``BPF_ENABLE_STATS`` (kernel 5.8,
commit d46edd671a14 "bpf: Sharing bpf runtime stats with BPF_ENABLE_STATS") enables them for as
long as the returned fd stays open, so they stop when the agent does, unlike the
``kernel.bpf_stats_enabled`` sysctl. Enabling them costs each program run two clock reads (see
Documentation/admin-guide/sysctl/kernel.rst, bpf_stats_enabled), so it is a config switch.
``struct bpf_prog_info`` offsets come from the running kernel's BTF.

Recursion misses (:func:`recursion_misses`) are counted whether statistics are on or not: the
runs the kernel skipped because the program was already running on that CPU (a tracepoint hit
from inside an interrupt that came in while the program ran on the same hook). What such a run
would have counted or sent is lost, so the agent reports them. Counted for tracing programs since
Linux 5.12 (commit 9ed9e9ba2337, "bpf: Count the number of times recursion was prevented"), for
BTF and raw tracepoints since 6.1 (commit 05b24ff9b2cf, "bpf: Prevent bpf program recursion for
raw tracepoint probes").
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import struct

from otel_kubeskoop.bpf import btf, libbpf

log = logging.getLogger(__name__)

BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type


@functools.cache
def _layout() -> btf.StructLayout:
    return btf.vmlinux_btf().struct_layout("bpf_prog_info")


def _info(prog_fd: int, layout: btf.StructLayout) -> bytes | None:
    buf = ctypes.create_string_buffer(layout.size)
    size = ctypes.c_uint32(layout.size)
    if libbpf.lib().bpf_obj_get_info_by_fd(prog_fd, buf, ctypes.byref(size)) != 0:
        return None
    return buf.raw


def recursion_misses(prog_fd: int) -> int | None:
    """Runs of one program the kernel skipped as recursive, or None (no such count here, or the
    program is gone)."""
    try:
        layout = _layout()
    except (OSError, btf.BTFError, KeyError):
        return None
    offset = layout.offsets.get("recursion_misses")
    raw = _info(prog_fd, layout) if offset is not None else None
    return None if raw is None else struct.unpack_from("<Q", raw, offset)[0]


class ProgramStats:
    def __init__(self) -> None:
        self._fd: int | None = None
        self._layout: btf.StructLayout | None = None
        self.reason = ""

    def enable(self) -> bool:
        """Turn statistics on for this process's lifetime; False (with ``reason``) if it cannot."""
        if self._fd is not None:
            return True
        try:
            layout = _layout()
            if "run_time_ns" not in layout.offsets or "run_cnt" not in layout.offsets:
                self.reason = "the kernel's struct bpf_prog_info has no run_time_ns/run_cnt (kernel < 5.1)"
                return False
            fd = libbpf.lib().bpf_enable_stats(BPF_STATS_RUN_TIME)
        except (OSError, btf.BTFError, KeyError) as exc:
            self.reason = f"cannot enable BPF statistics: {exc}"
            return False
        if fd < 0:
            self.reason = f"BPF_ENABLE_STATS failed: {libbpf.strerror(-fd)} (kernel 5.8+, CAP_SYS_ADMIN)"
            return False
        self._fd, self._layout = fd, layout
        return True

    def read(self, prog_fd: int) -> tuple[int, int] | None:
        """(run count, run time in ns) of one program, or None."""
        layout = self._layout
        if layout is None:
            return None
        raw = _info(prog_fd, layout)
        if raw is None:
            return None
        (run_time,) = struct.unpack_from("<Q", raw, layout.offsets["run_time_ns"])
        (run_cnt,) = struct.unpack_from("<Q", raw, layout.offsets["run_cnt"])
        return run_cnt, run_time

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
