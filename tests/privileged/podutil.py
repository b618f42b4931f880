# SPDX-License-Identifier: Apache-2.0
"""Put a test process into a cgroup with the kubelet's shape, so the agent sees a pod.

The cgroup is ``<root>/kubepods/<qos>/pod<uid>/<container id>`` (the cgroupfs driver's layout) in
the first hierarchy the kernel offers: cgroup v2 at /sys/fs/cgroup, the unified hierarchy of a
hybrid mount at /sys/fs/cgroup/unified, or the v1 memory hierarchy. Everything made is removed
at exit, even when the test fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CGROUP = Path("/sys/fs/cgroup")


def cgroup_root() -> Path:
    for root in (CGROUP, CGROUP / "unified", CGROUP / "memory"):
        if (root / "cgroup.procs").exists() and os.access(root / "cgroup.procs", os.W_OK):
            return root
    pytest.skip("no writable cgroup hierarchy (cgroup v2 or the v1 memory controller) at /sys/fs/cgroup")


def _remove(path: Path, root: Path) -> None:
    """Remove the container cgroup (waiting for its killed process to be reaped), then the parents
    that are empty; a parent still used by another test's pod stays (EBUSY)."""
    for attempt in range(100):
        try:
            path.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == 99:
                raise
            time.sleep(0.02)
    for parent in path.parents:
        if parent == root:
            return
        try:
            parent.rmdir()
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return
            if exc.errno != errno.ENOENT:
                raise


@contextmanager
def pod_cgroup(pid: int, pod_uid: str, container_id: str, qos: str = "besteffort") -> Iterator[Path]:
    root = cgroup_root()
    path = root / "kubepods" / qos / f"pod{pod_uid}" / container_id
    path.mkdir(parents=True, exist_ok=True)
    try:
        (path / "cgroup.procs").write_text(str(pid))
        yield path
    finally:
        with contextlib.suppress(ProcessLookupError):  # an exited process left the cgroup itself
            (root / "cgroup.procs").write_text(str(pid))
        _remove(path, root)
