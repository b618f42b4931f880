# SPDX-License-Identifier: Apache-2.0
"""Make sure tracefs is mounted: classic tracepoints attach through its ``events/`` tree.

A fresh machine may not have it mounted. We mount it at ``/sys/kernel/tracing`` when we can
(root with CAP_SYS_ADMIN); ``otel-kubeskoop doctor`` says when we cannot.
See https://docs.kernel.org/trace/ftrace.html ("The File System").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"


def tracefs_dir() -> str | None:
    """The mounted tracefs directory, or None."""
    for path in (TRACEFS, DEBUGFS_TRACING):
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def ensure_tracefs() -> tuple[str | None, str]:
    """Return (directory, message); mount tracefs at ``/sys/kernel/tracing`` if it is not mounted."""
    found = tracefs_dir()
    if found:
        return found, f"mounted at {found}"
    if not os.path.isdir(TRACEFS):
        return None, f"{TRACEFS} does not exist: the kernel has no tracefs (CONFIG_TRACING)"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"tracefs", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        return None, f"not mounted, and mounting it at {TRACEFS} failed: {os.strerror(err)} (needs CAP_SYS_ADMIN)"
    if tracefs_dir() is None:
        return None, f"mounted tracefs at {TRACEFS} but it has no events/ directory"
    return TRACEFS, f"mounted by otel-kubeskoop at {TRACEFS}"
