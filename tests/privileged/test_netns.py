# SPDX-License-Identifier: Apache-2.0
"""NetnsDiscovery, Netns and run_in_netns against real network namespaces (root needed)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from otel_kubeskoop.topology.netns import Netns, NetnsGone
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.nsexec import NetnsRunner, run_in_netns
from tests.privileged.netnsutil import (
    TestNetns,
    ip,
    netns,
    netns_inode_of_pid,
    require_root,
    tcp_refused,
    udp_to_closed_port,
    veth_pair,
)

require_root()

pytestmark = pytest.mark.privileged

# The test runs in the node's own namespace. (Its pid 1 may be unreadable even to root: a sandboxed,
# non-dumpable init gives EACCES; NetnsDiscovery then falls back to kthreadd.)
HOST_INODE = os.stat("/proc/self/ns/net").st_ino


def snmp_value(data: bytes, proto: str, field: str) -> int:
    """One counter from ``net/snmp`` bytes (minimal: the real parser lives in procfs)."""
    rows = [line.split() for line in data.decode().splitlines() if line.startswith(proto + ":")]
    assert len(rows) == 2, f"expected a header and a value line for {proto}, got {rows}"
    header, values = rows
    return int(values[header.index(field)])


def noports(data: bytes) -> int:
    return snmp_value(data, "Udp", "NoPorts")


def own_thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


@pytest.fixture
def discovery() -> Iterator[NetnsDiscovery]:
    d = NetnsDiscovery()
    yield d
    d.close()


def test_finds_pid_backed_and_processless_named_namespaces(discovery: NetnsDiscovery) -> None:
    with netns() as a, netns() as b:
        sleeper = a.sleeper()
        found = discovery.scan()

        assert a.inode == os.stat(f"/run/netns/{a.name}").st_ino
        assert b.inode == os.stat(f"/run/netns/{b.name}").st_ino
        ha, hb = found[a.inode], found[b.inode]
        assert (ha.pid, ha.name, ha.is_host) == (sleeper.pid, a.name, False)
        assert (hb.pid, hb.name, hb.is_host) == (None, b.name, False)
        assert ha.path("net/snmp") == f"/proc/{sleeper.pid}/net/snmp"

        # Every pid-backed namespace's representative really is in it.
        for inode, handle in found.items():
            if handle.pid is not None:
                assert netns_inode_of_pid(handle.pid) in (inode, None)  # None: exited since

        for handle in (ha, hb):
            fd = handle.open_nsfd()
            try:
                assert os.fstat(fd).st_ino == handle.inode
            finally:
                os.close(fd)


def test_reads_reflect_each_namespace(discovery: NetnsDiscovery) -> None:
    with netns() as a, netns() as b:
        a.sleeper()
        found = discovery.scan()
        ha, hb = found[a.inode], found[b.inode]
        assert ha.pid is not None and hb.pid is None
        assert noports(ha.read("net/snmp")) == 0
        assert noports(hb.read("net/snmp")) == 0

        udp_to_closed_port(b, 7)  # b has no process: read from a thread inside it
        assert noports(hb.read("net/snmp")) == 7
        assert noports(ha.read("net/snmp")) == 0

        udp_to_closed_port(a, 3)  # a has the sleeper: read through /proc/<pid>
        assert noports(ha.read("net/snmp")) == 3
        assert noports(hb.read("net/snmp")) == 7

        for handle in (ha, hb):
            with pytest.raises(FileNotFoundError) as err:
                handle.read("net/no_such_file")
            assert not isinstance(err.value, NetnsGone)
            assert b"lo:" in handle.read("net/dev")


def test_host_namespace_is_flagged(discovery: NetnsDiscovery) -> None:
    with netns():
        found = discovery.scan()
    hosts = [h for h in found.values() if h.is_host]
    assert [h.inode for h in hosts] == [HOST_INODE]
    assert hosts[0].pid is not None and hosts[0].pid <= 2
    assert hosts[0].read("net/dev").startswith(b"Inter-")


def test_deleted_namespaces_are_reported_gone(discovery: NetnsDiscovery) -> None:
    with netns() as a, netns() as b:
        a.sleeper()
        found = discovery.scan()
        ha, hb = found[a.inode], found[b.inode]
        assert noports(hb.read("net/snmp")) == 0
    # Both namespaces deleted and a's sleeper killed and reaped by the helper.
    after = discovery.scan()
    assert a.inode not in after and b.inode not in after
    assert {a.inode, b.inode} <= discovery.gone_since_last_scan
    assert ha.closed and hb.closed
    with pytest.raises(NetnsGone):
        ha.read("net/snmp")
    discovery.scan()
    assert not {a.inode, b.inode} & discovery.gone_since_last_scan


def test_handle_follows_a_namespace_losing_and_gaining_processes(discovery: NetnsDiscovery) -> None:
    with netns() as a:
        sleeper = a.sleeper()
        handle = discovery.scan()[a.inode]
        assert handle.pid == sleeper.pid
        udp_to_closed_port(a, 2)

        sleeper.kill()
        sleeper.wait()
        # Before the next scan: the representative is gone, the name still leads there.
        assert noports(handle.read("net/snmp")) == 2
        assert handle.pid == sleeper.pid
        assert discovery.scan()[a.inode] is handle
        assert (handle.pid, handle.name) == (None, a.name)
        assert noports(handle.read("net/snmp")) == 2

        second = a.sleeper()
        assert discovery.scan()[a.inode] is handle
        assert (handle.pid, handle.name) == (second.pid, a.name)
        assert noports(handle.read("net/snmp")) == 2


def test_unnamed_namespace_of_a_process(discovery: NetnsDiscovery) -> None:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while netns_inode_of_pid(proc.pid) in (None, HOST_INODE) and time.monotonic() < deadline:
            time.sleep(0.005)
        inode = netns_inode_of_pid(proc.pid)
        assert inode not in (None, HOST_INODE)
        handle = discovery.scan()[inode]
        assert (handle.pid, handle.name, handle.is_host) == (proc.pid, None, False)
        assert noports(handle.read("net/snmp")) == 0
    finally:
        proc.kill()
        proc.wait()
    assert inode not in discovery.scan()
    assert inode in discovery.gone_since_last_scan


def test_name_recreated_for_another_namespace_is_gone(discovery: NetnsDiscovery) -> None:
    with netns() as b:
        handle = discovery.scan()[b.inode]
        assert noports(handle.read("net/snmp")) == 0
        # Holding the old namespace open keeps it alive, so the kernel cannot hand its inode
        # number to the new namespace (inode numbers are reused once a namespace is freed).
        old = os.open(f"/run/netns/{b.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ip("netns", "del", b.name)
            ip("netns", "add", b.name)
            new_inode = os.stat(f"/run/netns/{b.name}").st_ino
            assert new_inode != b.inode
            with pytest.raises(NetnsGone, match="now refers to"):
                handle.read("net/snmp")
            found = discovery.scan()
            assert b.inode not in found and b.inode in discovery.gone_since_last_scan
            assert found[new_inode].name == b.name
        finally:
            os.close(old)


def test_proc_dirfd_fails_after_exit_instead_of_reading_by_pid() -> None:
    """Kernel behaviour the pid-backed handle relies on (measured on Linux 6.18).

    ``openat(dirfd of /proc/<pid>, "net/dev")`` fails with ENOENT while the process is a zombie
    (its namespaces are already released) and with ESRCH once it has been reaped. It never resolves
    to another process that later gets the same pid.
    """
    child = subprocess.Popen(["sleep", "infinity"], stdin=subprocess.DEVNULL)
    dirfd = os.open(f"/proc/{child.pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(os.open("net/dev", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd))
        child.kill()
        deadline = time.monotonic() + 5
        while open(f"/proc/{child.pid}/stat").read().split()[2] != "Z":
            assert time.monotonic() < deadline, "child did not become a zombie"
            time.sleep(0.005)
        with pytest.raises(OSError) as zombie:
            os.open("net/dev", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
        assert zombie.value.errno == errno.ENOENT
        child.wait()
        with pytest.raises(OSError) as reaped:
            os.open("net/dev", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
        assert reaped.value.errno == errno.ESRCH
        with pytest.raises(ProcessLookupError):
            os.readlink("ns/net", dir_fd=dirfd)
    finally:
        os.close(dirfd)
        if child.poll() is None:
            child.kill()
            child.wait()


def spawn_with_pid(pid: int, argv: list[str], attempts: int = 50) -> subprocess.Popen[bytes] | None:
    """Start ``argv`` as pid ``pid`` by setting ``ns_last_pid`` just before forking (root only)."""
    for _ in range(attempts):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def test_pid_reuse_by_another_namespace_is_netns_gone() -> None:
    if not os.path.exists("/proc/sys/kernel/ns_last_pid"):
        pytest.skip("needs /proc/sys/kernel/ns_last_pid (CONFIG_CHECKPOINT_RESTORE) to reuse a pid")
    with netns() as a:
        sleeper = a.sleeper()
        udp_to_closed_port(a, 4)
        handle = Netns(a.inode, pid=sleeper.pid)  # no name: nothing to fall back on
        try:
            assert noports(handle.read("net/snmp")) == 4
            old_pid = sleeper.pid
            sleeper.kill()
            sleeper.wait()

            impostor = spawn_with_pid(old_pid, ["sleep", "infinity"])  # in the host namespace
            assert impostor is not None, f"could not get pid {old_pid} again"
            try:
                # Reading by path would now silently read the host namespace...
                assert netns_inode_of_pid(old_pid) == HOST_INODE
                # ...the handle's directory fd still refers to the dead process, and says so.
                with pytest.raises(NetnsGone) as err:
                    handle.read("net/snmp")
                assert err.value.inode == a.inode
                with pytest.raises(NetnsGone):
                    handle.read("net/no_such_file")
                with pytest.raises(NetnsGone):
                    handle.open_nsfd()
            finally:
                impostor.kill()
                impostor.wait()
        finally:
            handle.close()


@pytest.fixture
def runner() -> Iterator[NetnsRunner]:
    r = NetnsRunner(name="kubeskoop-setns")
    yield r
    r.stop()


def named(ns: TestNetns, runner: NetnsRunner) -> Netns:
    """A handle on ``ns`` through its name only, as for a namespace without a process."""
    return Netns(ns.inode, name=ns.name, runner=runner)


def test_named_reads_leave_other_threads_in_the_host_namespace(runner: NetnsRunner) -> None:
    before = own_thread_netns()
    assert before == f"net:[{HOST_INODE}]"
    with netns() as b:
        handle = named(b, runner)
        udp_to_closed_port(b, 5)
        assert noports(handle.read("net/snmp")) == 5
        assert own_thread_netns() == before
        with pytest.raises(FileNotFoundError):
            handle.read("net/no_such_file")
        assert own_thread_netns() == before

        worker = next(t for t in threading.enumerate() if t.name == "kubeskoop-setns")
        assert worker.daemon and worker.native_id is not None
        # Idle, the worker is back in the namespace it started in.
        assert os.readlink(f"/proc/self/task/{worker.native_id}/ns/net") == before
    # The process (its leader) never moved either.
    assert os.readlink("/proc/self/ns/net") == before
    runner.stop()
    assert not worker.is_alive()
    assert own_thread_netns() == before


def test_run_in_netns_enters_each_namespace_in_turn_on_a_thread_that_ends() -> None:
    with netns() as a, netns() as b:
        fds = [os.open(n.path, os.O_RDONLY | os.O_CLOEXEC) for n in (a, b)]
        try:
            jobs = [(fds[0], own_thread_netns), (fds[1], own_thread_netns), (None, own_thread_netns),
                    (fds[0], own_thread_netns)]
            got = run_in_netns(jobs)
        finally:
            for fd in fds:
                os.close(fd)
    assert got == [f"net:[{a.inode}]", f"net:[{b.inode}]", f"net:[{HOST_INODE}]", f"net:[{a.inode}]"]
    assert own_thread_netns() == f"net:[{HOST_INODE}]"
    assert not [t for t in threading.enumerate() if t.name == "kubeskoop-netns"]


def test_named_reads_serve_concurrent_callers(runner: NetnsRunner) -> None:
    errors: list[BaseException] = []
    with netns() as a, netns() as b:
        udp_to_closed_port(a, 1)
        udp_to_closed_port(b, 6)
        expected = {a.inode: 1, b.inode: 6}
        handles = {a.inode: named(a, runner), b.inode: named(b, runner)}

        def work(order: list[int]) -> None:
            try:
                for _ in range(25):
                    for inode in order:
                        assert noports(handles[inode].read("net/snmp")) == expected[inode]
            except BaseException as err:  # reported by the main thread
                errors.append(err)

        orders = ([a.inode, b.inode], [b.inode, a.inode])
        threads = [threading.Thread(target=work, args=(orders[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not [t for t in threads if t.is_alive()], "reads still running after 30 s"
    assert not errors, errors


def test_named_reads_do_not_pin_a_deleted_namespace(runner: NetnsRunner) -> None:
    """Read a namespace, delete it: the kernel destroys it (the veth peer outside vanishes)."""
    with netns() as keep:
        with netns() as doomed, veth_pair(keep, doomed) as (dev_keep, _dev_doomed):
            handle = named(doomed, runner)
            assert b"lo:" in handle.read("net/dev")
            assert dev_keep.encode() in keep.run("cat", "/proc/net/dev").stdout.encode()
            ip("netns", "del", doomed.name)
            deadline = time.monotonic() + 10
            while dev_keep in ip("-n", keep.name, "-o", "link").stdout:
                assert time.monotonic() < deadline, "deleted namespace still alive (pinned?)"
                time.sleep(0.05)
            with pytest.raises(NetnsGone):
                handle.read("net/dev")
    assert runner.running


def test_veth_pair_ends_are_in_their_namespaces(discovery: NetnsDiscovery) -> None:
    with netns() as a, netns() as b:
        with veth_pair(a, b) as (dev_a, dev_b):
            assert len(dev_a) <= 15 and len(dev_b) <= 15
            found = discovery.scan()
            dev_in_a = found[a.inode].read("net/dev").decode()
            dev_in_b = found[b.inode].read("net/dev").decode()
            assert f"{dev_a}:" in dev_in_a and f"{dev_b}:" not in dev_in_a
            assert f"{dev_b}:" in dev_in_b and f"{dev_a}:" not in dev_in_b
            # A datagram over the pair reaches b's stack (nothing listens: b's NoPorts counts it).
            a.python(
                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                "s.sendto(b'x', ('10.231.0.2', 9))"
            )
            deadline = time.monotonic() + 5
            while noports(found[b.inode].read("net/snmp")) != 1:
                assert time.monotonic() < deadline, "datagram over the veth pair never arrived"
                time.sleep(0.02)
        assert dev_a not in ip("-n", a.name, "-o", "link").stdout


def test_udp_to_closed_port_moves_noports_by_count(discovery: NetnsDiscovery) -> None:
    with netns() as a:
        handle = discovery.scan()[a.inode]
        before = handle.read("net/snmp")
        udp_to_closed_port(a, 9)
        after = handle.read("net/snmp")
        assert noports(after) - noports(before) == 9
        sent = snmp_value(after, "Udp", "OutDatagrams") - snmp_value(before, "Udp", "OutDatagrams")
        assert sent == 9


def test_tcp_refused_counters(discovery: NetnsDiscovery) -> None:
    with netns() as a:
        handle = discovery.scan()[a.inode]
        before = handle.read("net/snmp")
        tcp_refused(a, 5)
        after = handle.read("net/snmp")
        delta = {
            field: snmp_value(after, "Tcp", field) - snmp_value(before, "Tcp", field)
            for field in (
                "ActiveOpens", "AttemptFails", "OutRsts", "InSegs", "OutSegs", "PassiveOpens"
            )
        }
        assert delta == {
            "ActiveOpens": 5,
            "AttemptFails": 5,
            "OutRsts": 5,
            "InSegs": 10,
            "OutSegs": 10,
            "PassiveOpens": 0,
        }
