# SPDX-License-Identifier: Apache-2.0
"""tcpsummary at 10,000 TCP sockets in one namespace: sock_diag (the probe) vs /proc/<pid>/net/tcp{,6}
(upstream's way), in one run.

One namespace made here holds 10,001 TCP sockets in one process (a listener and 5,000 accepted
connections, both ends). For each way, the median of REPEAT runs (the two ways alternating, so
other work on the machine weighs on both alike) of thread CPU time (user + system:
the kernel's work of walking the socket tables and formatting the answer is done in the reading
thread's syscalls) and wall time:

- netlink: ``read_tcp_summary`` on a socket already made in the namespace: two sock_diag dumps
  (AF_INET, AF_INET6), each datagram summed as it arrives, which is what the probe does per
  namespace per collection;
- proc: read ``/proc/<pid>/net/tcp`` and ``tcp6`` through the namespace handle and parse them line
  by line (``tests/privileged/probes/netlinkutil.parse_proc_net_tcp``), as upstream does;
- pyroute2: pyroute2's full decode of the same sock_diag bytes (``MarshalDiag().parse``), to show
  why the probe reads only the fixed header of each message.

Both ways must agree on every count. Also measured: the base cost of a namespace without any TCP
socket (both ways walk the kernel's whole TCP hash table, shared by all namespaces), and making
one netlink socket inside another
namespace with this package's short-lived thread vs ``pyroute2.netns.create_socket`` (which
forks a child process per socket). Results go to bench/results/tcpsummary.json. Run as root.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroute2.netlink import NETLINK_ROUTE, NETLINK_SOCK_DIAG  # noqa: E402
from pyroute2.netlink.diag import MarshalDiag  # noqa: E402

from otel_kubeskoop.netlink.sock_diag import inet_diag_request, parse_tcp_summary, read_tcp_summary  # noqa: E402
from otel_kubeskoop.netlink.sockets import dump, open_netlink_sockets, socket_netns_inode  # noqa: E402
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery  # noqa: E402
from tests.privileged.netnsutil import netns  # noqa: E402
from tests.privileged.probes.netlinkutil import hold_tcp, parse_proc_net_tcp  # noqa: E402

CONNECTIONS = 5000
REPEAT = 31
OUT = Path(__file__).resolve().parent / "results" / "tcpsummary.json"


def timed(fn, repeat: int = REPEAT) -> tuple[float, float]:
    """Median thread CPU and wall seconds of ``fn``."""
    return interleaved([fn], repeat)[0]


def interleaved(fns, repeat: int = REPEAT) -> list[tuple[float, float]]:
    """Median thread CPU and wall seconds of each of ``fns``, run in turn ``repeat`` times, so
    that machine noise (other work on the CPUs) weighs on each alike."""
    cpu: list[list[float]] = [[] for _ in fns]
    wall: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            c0, w0 = time.thread_time(), time.perf_counter()
            fn()
            cpu[i].append(time.thread_time() - c0)
            wall[i].append(time.perf_counter() - w0)
    return [(statistics.median(c), statistics.median(w)) for c, w in zip(cpu, wall)]


def ehash_buckets() -> int | None:
    """Buckets of the TCP established hash table, from the kernel log line at boot."""
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in log.splitlines():
        if "TCP established hash table entries:" in line:
            return int(line.split("entries:")[1].split()[0])
    return None


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark makes a network namespace")
    with netns() as ns:
        holder = hold_tcp(ns, [{"host": "127.0.0.1", "port": 8100, "backlog": 4096, "accepted": CONNECTIONS}])
        try:
            with NetnsDiscovery() as discovery:
                handle = discovery.scan()[ns.inode]
                fd = handle.open_nsfd()
                try:
                    (sock,) = open_netlink_sockets([(fd, ns.inode)], NETLINK_SOCK_DIAG)
                finally:
                    os.close(fd)
                assert isinstance(sock, socket.socket) and socket_netns_inode(sock) == ns.inode
                sock.settimeout(5.0)
                seq = iter(range(2, 10_000_000, 2))

                def netlink():
                    return read_tcp_summary(sock, next(seq))

                def proc():
                    return parse_proc_net_tcp(handle.read("net/tcp"), handle.read("net/tcp6"))

                via_netlink, via_proc = netlink(), proc()
                sockets = via_netlink.sockets
                assert sockets == CONNECTIONS * 2 + 1 == sum(via_proc.states.values()), (sockets, via_proc)
                assert dict(via_proc.states) == {k: v for k, v in via_netlink.states.items() if v}
                assert (via_netlink.rx_queue, via_netlink.tx_queue, via_netlink.listen_queue) == (
                    via_proc.rx_queue, via_proc.tx_queue, via_proc.listen_queue)

                (netlink_cpu, netlink_wall), (proc_cpu, proc_wall) = interleaved([netlink, proc])
                v4 = dump(sock, inet_diag_request(socket.AF_INET, 1), 1)
                v6 = dump(sock, inet_diag_request(socket.AF_INET6, 3), 3)
                decode_cpu, _ = timed(lambda: parse_tcp_summary(v4, v6))
                pyroute2_cpu, _ = timed(lambda: (list(MarshalDiag().parse(v4)), list(MarshalDiag().parse(v6))), 3)
                sock.close()

                # Making a socket inside the namespace: our thread vs pyroute2's forked child.
                def ours():
                    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        (s,) = open_netlink_sockets([(fd, ns.inode)], NETLINK_ROUTE)
                    finally:
                        os.close(fd)
                    s.close()

                def pyroute2_fork():
                    from pyroute2.netns import create_socket
                    s = create_socket(ns.name, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
                    assert socket_netns_inode(s) == ns.inode
                    s.close()

                _, ours_wall = timed(ours, 30)
                _, fork_wall = timed(pyroute2_fork, 10)
        finally:
            holder.kill()
            holder.wait()

    # The base cost per namespace: a namespace with no TCP socket at all. Both ways walk the
    # kernel's (global) TCP hash table to find that out.
    with netns() as empty:
        sleeper = empty.sleeper()
        with NetnsDiscovery() as discovery:
            handle = discovery.scan()[empty.inode]
            fd = handle.open_nsfd()
            try:
                (sock,) = open_netlink_sockets([(fd, empty.inode)], NETLINK_SOCK_DIAG)
            finally:
                os.close(fd)
            sock.settimeout(5.0)
            assert read_tcp_summary(sock, 1).sockets == 0
            (empty_netlink, _), (empty_proc, _) = interleaved([
                lambda: read_tcp_summary(sock, next(seq)),
                lambda: parse_proc_net_tcp(handle.read("net/tcp"), handle.read("net/tcp6")),
            ])
            sock.close()
        sleeper.kill()

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "repeat": REPEAT,
        "sockets": sockets,
        "netlink": {"cpu_ms": netlink_cpu * 1e3, "wall_ms": netlink_wall * 1e3,
                    "decode_only_ms": decode_cpu * 1e3, "bytes": len(v4) + len(v6)},
        "proc": {"cpu_ms": proc_cpu * 1e3, "wall_ms": proc_wall * 1e3},
        "proc_over_netlink_cpu": proc_cpu / netlink_cpu,
        "proc_over_netlink_wall": proc_wall / netlink_wall,
        "empty_namespace_us": {"netlink_cpu": empty_netlink * 1e6, "proc_cpu": empty_proc * 1e6,
                               "tcp_ehash_buckets": ehash_buckets()},
        "pyroute2_full_decode_ms": pyroute2_cpu * 1e3,
        "socket_in_namespace_us": {"thread_setns": ours_wall * 1e6, "pyroute2_create_socket_fork": fork_wall * 1e6},
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{sockets} TCP sockets in one namespace, median of {REPEAT}:")
    print(f"  sock_diag (probe):     {netlink_cpu * 1e3:7.2f} ms CPU  {netlink_wall * 1e3:7.2f} ms wall"
          f"  (decode alone {decode_cpu * 1e3:.2f} ms, {len(v4) + len(v6)} bytes)")
    print(f"  /proc/net/tcp{{,6}}:     {proc_cpu * 1e3:7.2f} ms CPU  {proc_wall * 1e3:7.2f} ms wall")
    print(f"  ratio /proc / sock_diag: {proc_cpu / netlink_cpu:.1f}x CPU, {proc_wall / netlink_wall:.1f}x wall")
    print(f"  a namespace without sockets: sock_diag {empty_netlink * 1e6:.0f} us CPU, /proc {empty_proc * 1e6:.0f} us CPU"
          f" (both walk the kernel's TCP hash table, {ehash_buckets()} buckets)")
    print(f"  pyroute2 full decode of the same dump: {pyroute2_cpu * 1e3:.1f} ms CPU")
    print(f"  one socket in the namespace: thread+setns {ours_wall * 1e6:.0f} us, "
          f"pyroute2 create_socket (fork) {fork_wall * 1e6:.0f} us")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
