# SPDX-License-Identifier: Apache-2.0
"""CPU cost of the pod-scope probes (fd, io) per collection, and of the two ways to find pods'
processes, at 50 pods x 10 processes among about 2000 processes on the node.

Made here and removed at the end: PODS pod cgroups (kubelet's cgroupfs shape, in the first
writable hierarchy, as tests/privileged/podutil.py does) with PROCS processes each, every one a
``sleep`` holding 10 descriptors; plus idle ``sleep`` processes outside any pod until the node has
about TOTAL processes. Measured, as thread CPU time (median of REPEAT runs):

- cgroup.procs: the walk of the cgroup hierarchies plus one ``cgroup.procs`` read per pod cgroup
  (what the probes use, ``topology/podprocs.py``);
- /proc scan:   the alternative, reading and parsing ``/proc/<pid>/cgroup`` of every process;
- fd collect:   the fd probe's whole collection (scan + one listing and a readlink per descriptor);
- io collect:   the io probe's whole collection (scan + ``stat`` and ``io`` per process).

Results go to bench/results/pod_scope_cost.json. Run as root.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_kubeskoop.probe import Cycle, ProbeContext  # noqa: E402
from otel_kubeskoop.probes import fd, io  # noqa: E402
from otel_kubeskoop.procfs import ParseError  # noqa: E402
from otel_kubeskoop.topology.cgroup import parse_proc_cgroup  # noqa: E402
from otel_kubeskoop.topology.podprocs import find_hierarchies, scan_pod_processes  # noqa: E402
from tests.kube_apiserver import container_id  # noqa: E402
from tests.privileged.podutil import pod_cgroup  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "pod_scope_cost.json"
PODS, PROCS, TOTAL, REPEAT = 50, 10, 2000, 15
HOLDER = "exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null; exec sleep 3600"


def cpu(fn) -> float:
    """Median thread CPU seconds of ``fn()`` over REPEAT runs (after one warm-up)."""
    fn()
    runs = []
    for _ in range(REPEAT):
        t0 = time.thread_time()
        fn()
        runs.append(time.thread_time() - t0)
    return statistics.median(runs)


def scan_proc_cgroup() -> int:
    found = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup", "rb") as f:
                if parse_proc_cgroup(f.read()) is not None:
                    found += 1
        except (FileNotFoundError, ProcessLookupError, ParseError):
            continue
    return found


def count_dirs(path: str) -> int:
    return sum(1 for _ in os.walk(path))


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/pod_scope_cost.py needs root (cgroups)")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with ExitStack() as stack:
            for p in range(PODS):
                uid = str(uuid.uuid4())
                for c in range(PROCS):
                    proc = subprocess.Popen(["sh", "-c", HOLDER])
                    procs.append(proc)
                    stack.enter_context(pod_cgroup(proc.pid, uid, container_id(uid, f"c{c}")))
            while sum(1 for n in os.listdir("/proc") if n.isdigit()) < TOTAL:
                procs.append(subprocess.Popen(["sleep", "3600"]))
            time.sleep(0.5)  # the sh processes have exec'd sleep with their descriptors
            nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
            hierarchies = find_hierarchies("/sys/fs/cgroup")
            scan = scan_pod_processes(hierarchies)
            ours = {u: p for u, p in scan.pods.items() if len(p) == PROCS}
            assert len(ours) >= PODS, f"found {len(ours)} pods of {PROCS} processes"
            assert scan_proc_cgroup() >= PODS * PROCS

            def collect(spec):
                ctx = ProbeContext(spec.name)
                probe = spec.factory(spec.args(), ctx)
                probe.start()

                def once():
                    ctx.cycle = Cycle()
                    probe.collect()
                return once

            result = {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "kernel": platform.release(), "cpus": os.cpu_count(),
                "pods": PODS, "processes_per_pod": PROCS, "descriptors_per_process": 10,
                "processes_on_node": nprocs,
                "hierarchies": [h.path for h in hierarchies],
                "cgroup_dirs_walked": sum(count_dirs(h.path) for h in hierarchies),
                "cpu_ms": {
                    "cgroup_procs_scan": round(cpu(lambda: scan_pod_processes(hierarchies)) * 1e3, 2),
                    "proc_cgroup_scan": round(cpu(scan_proc_cgroup) * 1e3, 2),
                    "fd_collect": round(cpu(collect(fd.SPEC)) * 1e3, 2),
                    "io_collect": round(cpu(collect(io.SPEC)) * 1e3, 2),
                },
            }
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
