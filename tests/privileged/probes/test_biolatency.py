# SPDX-License-Identifier: Apache-2.0
"""biolatency on the real kernel, on loop devices the test makes (backed by files in a temporary
directory, detached even when a test fails):

- O_DIRECT reads and writes of known count from a process inside a test namespace land, request
  for request, on that namespace, device and operation;
- slow I/O: a loop device stacked on another loop device whose reads are throttled by a blkio
  cgroup (blk-throttle delays the lower device's bios, which the upper device's request waits
  for), read from a process in the cgroup and a test namespace: every request is slow, an event
  names it, and the lower device's requests, issued by the loop worker (a kernel thread), land
  on the host namespace: the case the probe cannot attribute to a pod.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from otel_kubeskoop.bpf.attach import AttachPoint
from otel_kubeskoop.probes import biolatency
from tests.privileged.netnsutil import TestNetns, netns, require_root, unique_name
from tests.privileged.probes.conftest import Harness, attrs
from tests.privileged.probes.latencyutil import KINDS, at_least, count, minus, value, with_kind

require_root()

pytestmark = pytest.mark.privileged

DURATION = "kubeskoop.biolatency.duration"
DEVICE = "system.device"
OP = "kubeskoop.block.operation"
BLOCK = 4096

DIRECT_IO = """
import mmap, os
fd = os.open({path!r}, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, {block})  # page-aligned, as O_DIRECT wants
for i in range({reads}):
    assert os.preadv(fd, [buf], (2 * i + 1) * {block}) == {block}
for i in range({writes}):
    assert os.pwritev(fd, [buf], (2 * i + 2) * {block}) == {block}
os.close(fd)
"""

# Wait for a line on stdin first: the test moves the process into a cgroup meanwhile (inside
# ``ip netns exec`` /sys is the namespace's own sysfs, without the cgroup hierarchies).
WAIT = "import sys\nsys.stdin.readline()\n"


def require_losetup() -> None:
    # losetup comes with Debian's essential `mount` package: missing, the machine is broken.
    assert shutil.which("losetup"), "losetup missing (Debian package mount)"
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("kernel without loop devices (CONFIG_BLK_DEV_LOOP)")


@contextmanager
def loop_device(backing: str | Path, size: int = 64 << 20) -> Iterator[str]:
    """A loop device with direct I/O on ``backing`` (a file, made of ``size`` bytes if missing,
    or a block device); detached at exit."""
    backing = str(backing)
    if not backing.startswith("/dev/"):
        with open(backing, "wb") as f:
            f.truncate(size)
    dev = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", backing],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


def _cgroup2_with_io() -> Path | None:
    """A mounted cgroup v2 hierarchy whose root offers the io controller, if any."""
    with open("/proc/mounts", encoding="ascii", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                root = Path(fields[1])
                if "io" in (root / "cgroup.controllers").read_text().split():
                    return root
    return None


@contextmanager
def throttled_cgroup(dev: str, read_iops: int) -> Iterator[str]:
    """A cgroup whose reads from block device ``dev`` blk-throttle limits to ``read_iops``:
    cgroup v1 blkio (``blkio.throttle.read_iops_device``) or v2 (``io.max riops=``). Yields its
    ``cgroup.procs``; removed at exit (its processes must have exited)."""
    majmin = Path(f"/sys/block/{os.path.basename(dev)}/dev").read_text().strip()
    v1 = Path("/sys/fs/cgroup/blkio")
    if (v1 / "blkio.throttle.read_iops_device").exists():
        root, limit_file, limit = v1, "blkio.throttle.read_iops_device", f"{majmin} {read_iops}\n"
    else:
        found = _cgroup2_with_io()
        if found is None or not (found / "cgroup.subtree_control").exists():
            pytest.skip("kernel without blk-throttle (CONFIG_BLK_DEV_THROTTLING) in a cgroup v1 "
                        "blkio or cgroup v2 io hierarchy")
        root, limit_file, limit = found, "io.max", f"{majmin} riops={read_iops}\n"
        (root / "cgroup.subtree_control").write_text("+io\n")
    cg = root / unique_name()
    cg.mkdir()
    try:
        if not (cg / limit_file).exists():
            pytest.skip(f"kernel without blk-throttle (CONFIG_BLK_DEV_THROTTLING): no {limit_file}")
        (cg / limit_file).write_text(limit)
        yield str(cg / "cgroup.procs")
    finally:
        cg.rmdir()


def direct_io(ns: TestNetns, dev: str, reads: int, writes: int = 0, cgroup_procs: str = "") -> int:
    """``reads`` then ``writes`` O_DIRECT blocks on ``dev`` from a process in ``ns`` (first moved
    into the cgroup of ``cgroup_procs`` if given); the process's pid when in a cgroup."""
    code = DIRECT_IO.format(path=dev, block=BLOCK, reads=reads, writes=writes)
    if not cgroup_procs:
        ns.python(code, timeout=60)
        return 0
    proc = ns.popen(sys.executable, "-c", WAIT + code, stdin=subprocess.PIPE)
    Path(cgroup_procs).write_text(f"{proc.pid}\n")
    proc.communicate(b"go\n", timeout=60)
    assert proc.returncode == 0, f"direct I/O on {dev} failed ({proc.returncode})"
    return proc.pid


def hist(h: Harness, inode: int | None, dev: str, op: str) -> Any:
    series = h.collect("biolatency")
    return value({a: v for (inst, ns, a), v in series.items() if inst == DURATION and ns == inode},
                 {DEVICE: os.path.basename(dev), OP: op})


def test_attaches_to_btf_tracepoints(harness: Harness) -> None:
    probe = harness.start(biolatency.SPEC)
    assert probe.bpf.chosen == {
        "issue": AttachPoint("tp_btf", "block_rq_issue"),
        "complete": AttachPoint("tp_btf", "block_rq_complete"),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_direct_io_is_counted_request_for_request_on_its_namespace(
    harness: Harness, tmp_path: Path, kind: str
) -> None:
    require_losetup()
    probe = harness.start(biolatency.SPEC, factory=with_kind(biolatency.BiolatencyProbe, kind))
    assert {p.kind for p in probe.bpf.chosen.values()} == {kind}
    with netns() as a, loop_device(tmp_path / "disk.img") as dev:
        direct_io(a, dev, reads=40, writes=25)
        reads, writes = hist(harness, a.inode, dev, "read"), hist(harness, a.inode, dev, "write")
    # A synchronous O_DIRECT read or write of one block is one request: nothing to merge with,
    # since the next is submitted after this one completed. (Asynchronous or buffered I/O would
    # be merged by the block layer, and count fewer requests than system calls.)
    assert count(reads) == 40
    assert count(writes) == 25
    assert reads.sum > 0 and writes.sum > 0


def test_throttled_io_is_slow_events_name_it_and_the_worker_is_not_a_pod(
    harness: Harness, tmp_path: Path
) -> None:
    require_losetup()
    args = biolatency.BiolatencyArgs(thresholdMs=10)
    probe = harness.start(biolatency.SPEC, args)
    reads = 6
    with netns() as a, loop_device(tmp_path / "lower.img") as lower, loop_device(lower) as upper:
        host = next(inode for inode, ns in harness.cycle.namespaces.items() if ns.is_host)
        lower_before = hist(harness, host, lower, "read")
        with throttled_cgroup(lower, read_iops=5) as procs:
            pid = direct_io(a, upper, reads=reads, cgroup_procs=procs)
        harness.drain()
        slow = hist(harness, a.inode, upper, "read")
        lower_read = minus(hist(harness, host, lower, "read"), lower_before)
        lower_in_a = hist(harness, a.inode, lower, "read")
    assert count(slow) == reads
    # 5 reads a second: each waits about 200 ms (the first may go through sooner).
    assert at_least(slow, 0.0671) >= reads - 1
    events = harness.events_in(a.inode, "kubeskoop.biolatency.slow")
    assert len(events) >= reads - 1
    for event in events:
        e = attrs(event)
        assert event.upstream_type == "BIOLAT_10MS"
        assert e[DEVICE] == os.path.basename(upper)
        assert e[OP] == "read"
        assert e["kubeskoop.latency"] > 0.010
        assert e["kubeskoop.block.bytes"] == BLOCK
        assert e["process.pid"] == pid
        assert e["process.command"] == os.path.basename(sys.executable)[:15]
        assert e["kubeskoop.task.kernel_thread"] is False
        assert "error.type" not in e
    # The lower device's requests come from the loop worker (a kworker): the host's, not a's.
    assert lower_in_a is None
    assert count(lower_read) >= reads
    assert probe.hists.evicted() == 0
