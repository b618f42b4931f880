# SPDX-License-Identifier: Apache-2.0
"""What each BPF program costs: run count and run time from the kernel's program statistics.

The kernel counts them only while statistics are enabled. ``BPF_ENABLE_STATS`` (kernel 5.8,
commit d46edd671a14 "bpf: Sharing bpf runtime stats with BPF_ENABLE_STATS") enables them for as
long as the returned fd stays open, so they stop when the agent does, unlike the
``kernel.bpf_stats_enabled`` sysctl. Enabling them costs each program run two clock reads (see
Documentation/admin-guide/sysctl/kernel.rst, bpf_stats_enabled), so it is a config switch.
``struct bpf_prog_info`` offsets come from the running kernel's BTF.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct

from otel_kubeskoop.bpf import btf, libbpf

log = logging.getLogger(__name__)

BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type


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
            layout = btf.vmlinux_btf().struct_layout("bpf_prog_info")
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
        buf = ctypes.create_string_buffer(layout.size)
        size = ctypes.c_uint32(layout.size)
        if libbpf.lib().bpf_obj_get_info_by_fd(prog_fd, buf, ctypes.byref(size)) != 0:
            return None
        raw = buf.raw
        (run_time,) = struct.unpack_from("<Q", raw, layout.offsets["run_time_ns"])
        (run_cnt,) = struct.unpack_from("<Q", raw, layout.offsets["run_cnt"])
        return run_cnt, run_time

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
