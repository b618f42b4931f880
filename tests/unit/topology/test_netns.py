# SPDX-License-Identifier: Apache-2.0
"""NetnsDiscovery and Netns against the fake /proc in tests/fixtures/netns/proc (no root needed)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_kubeskoop.topology.netns import (
    Netns,
    NetnsGone,
    NetnsInfo,
    parse_netns_link,
)
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from otel_kubeskoop.topology.nsexec import NetnsRunner

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "netns" / "proc"

HOST = 4026531840
POD_A = 4026532281  # pids 100, 101, 120
POD_B = 4026532282  # pid 205


def snmp(pid: int) -> bytes:
    return (FIXTURE / str(pid) / "net" / "snmp").read_bytes()


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A private, mutable copy of the fixture tree (symlinks copied as symlinks)."""
    root = tmp_path / "proc"
    shutil.copytree(FIXTURE, root, symlinks=True)
    return root


@pytest.fixture
def discovery(proc: Path, tmp_path: Path):
    d = NetnsDiscovery(proc_root=str(proc), netns_dir=str(tmp_path / "no-netns"))
    yield d
    d.close()


def add_pid(proc: Path, pid: int, link: str, snmp_body: bytes | None = None) -> None:
    (proc / str(pid) / "ns").mkdir(parents=True)
    (proc / str(pid) / "ns" / "net").symlink_to(link)
    if snmp_body is not None:
        (proc / str(pid) / "net").mkdir()
        (proc / str(pid) / "net" / "snmp").write_bytes(snmp_body)


@pytest.mark.parametrize(
    ("target", "inode"),
    [
        ("net:[4026531840]", 4026531840),
        ("net:[1]", 1),
        ("foo", None),
        ("mnt:[4026531841]", None),
        ("net:[]", None),
        ("net:[12x]", None),
        ("net:[4026531840", None),
        ("net:[-1]", None),
    ],
)
def test_parse_netns_link(target: str, inode: int | None) -> None:
    assert parse_netns_link(target) == inode


def test_scan_one_namespace_per_inode_lowest_pid(discovery: NetnsDiscovery) -> None:
    found = discovery.scan()
    assert set(found) == {HOST, POD_A, POD_B}
    assert {inode: h.pid for inode, h in found.items()} == {HOST: 1, POD_A: 100, POD_B: 205}
    assert all(h.name is None for h in found.values())
    assert discovery.gone_since_last_scan == set()


def test_host_is_flagged(discovery: NetnsDiscovery) -> None:
    found = discovery.scan()
    assert [inode for inode, h in found.items() if h.is_host] == [HOST]
    assert found[HOST].info == NetnsInfo(inode=HOST, pid=1, name=None, is_host=True)
    assert found[POD_A].info == NetnsInfo(inode=POD_A, pid=100, name=None, is_host=False)


def test_host_pid_is_configurable(proc: Path, tmp_path: Path) -> None:
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), host_pid=205) as d:
        found = d.scan()
        assert [inode for inode, h in found.items() if h.is_host] == [POD_B]


def test_host_falls_back_to_kthreadd(proc: Path, tmp_path: Path) -> None:
    # host_pid's ns/net unreadable (here: absent); pid 2 is kthreadd, always in the initial netns.
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), host_pid=99999) as d:
        assert [inode for inode, h in d.scan().items() if h.is_host] == [HOST]


def test_no_host_when_host_pid_absent_and_pid_2_is_not_kthreadd(proc: Path, tmp_path: Path) -> None:
    # A proc_root of a container's pid namespace: its pid 2 is an ordinary process.
    (proc / "2" / "comm").write_bytes(b"sh\n")
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), host_pid=99999) as d:
        assert not any(h.is_host for h in d.scan().values())
    (proc / "2" / "comm").unlink()
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), host_pid=99999) as d:
        assert not any(h.is_host for h in d.scan().values())


def test_garbage_and_missing_links_are_skipped(
    discovery: NetnsDiscovery, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="otel_kubeskoop.topology.netns_discovery"):
        found = discovery.scan()
    pids = {h.pid for h in found.values()}
    assert not pids & {2, 300, 301, 400}
    messages = caplog.text
    assert "pid 300" in messages and "'foo'" in messages
    assert "pid 301" in messages
    assert "pid 400" in messages
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]


def test_info_is_frozen(discovery: NetnsDiscovery) -> None:
    info = discovery.scan()[POD_A].info
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.pid = 1  # type: ignore[misc]


def test_read_through_handle(discovery: NetnsDiscovery, proc: Path) -> None:
    found = discovery.scan()
    assert found[POD_A].read("net/snmp") == snmp(100)
    assert found[POD_B].read("net/snmp") == snmp(205)
    assert found[HOST].read("net/snmp") == snmp(1)
    assert found[POD_A].path("net/snmp") == f"{proc}/100/net/snmp"


def test_missing_file_passes_through(discovery: NetnsDiscovery) -> None:
    handle = discovery.scan()[POD_A]
    with pytest.raises(FileNotFoundError) as err:
        handle.read("net/ip_vs_stats")
    assert not isinstance(err.value, NetnsGone)


def test_absolute_path_is_refused(discovery: NetnsDiscovery) -> None:
    with pytest.raises(ValueError):
        discovery.scan()[POD_A].read("/etc/hostname")


def test_representative_is_stable_when_lower_pid_appears(
    discovery: NetnsDiscovery, proc: Path
) -> None:
    first = discovery.scan()[POD_A]
    add_pid(proc, 50, f"net:[{POD_A}]", b"Udp: x\nUdp: 50\n")
    second = discovery.scan()[POD_A]
    assert second is first
    assert second.pid == 100
    assert second.read("net/snmp") == snmp(100)


def test_representative_moves_to_lowest_remaining_pid(
    discovery: NetnsDiscovery, proc: Path
) -> None:
    first = discovery.scan()[POD_A]
    add_pid(proc, 50, f"net:[{POD_A}]", b"Udp: x\nUdp: 50\n")
    discovery.scan()
    shutil.rmtree(proc / "100")
    again = discovery.scan()
    assert again[POD_A] is first  # same handle object, rebound
    assert first.pid == 50
    assert first.read("net/snmp") == b"Udp: x\nUdp: 50\n"
    assert discovery.gone_since_last_scan == set()


def test_read_after_process_vanished_is_netns_gone(discovery: NetnsDiscovery, proc: Path) -> None:
    handle = discovery.scan()[POD_B]
    shutil.rmtree(proc / "205")
    with pytest.raises(NetnsGone) as err:
        handle.read("net/snmp")
    assert err.value.inode == POD_B
    assert isinstance(err.value, LookupError)
    # A missing file of a vanished process is NetnsGone too, never FileNotFoundError.
    with pytest.raises(NetnsGone):
        handle.read("net/ip_vs_stats")


def test_read_after_process_changed_namespace_is_netns_gone(
    discovery: NetnsDiscovery, proc: Path
) -> None:
    handle = discovery.scan()[POD_A]
    link = proc / "100" / "ns" / "net"
    link.unlink()
    link.symlink_to(f"net:[{POD_B}]")
    with pytest.raises(NetnsGone):
        handle.read("net/snmp")
    found = discovery.scan()
    assert found[POD_A] is handle and handle.pid == 101
    assert handle.read("net/snmp") == snmp(101)
    assert found[POD_B].pid == 205  # 100 joined it but is lower: the representative stays


def test_representative_rebinds_when_its_pid_is_reused(
    discovery: NetnsDiscovery, proc: Path
) -> None:
    """Pid 205 exits and a new pid 205 appears in the same namespace: the old dir fd is dead."""
    handle = discovery.scan()[POD_B]
    shutil.rmtree(proc / "205")
    add_pid(proc, 205, f"net:[{POD_B}]", b"Udp: x\nUdp: new-205\n")
    found = discovery.scan()
    assert found[POD_B] is handle and handle.pid == 205
    assert handle.read("net/snmp") == b"Udp: x\nUdp: new-205\n"


def test_new_namespace_appears(discovery: NetnsDiscovery, proc: Path) -> None:
    before = discovery.scan()
    add_pid(proc, 500, "net:[4026532999]", b"Udp: x\nUdp: 500\n")
    after = discovery.scan()
    assert set(after) == set(before) | {4026532999}
    assert all(after[inode] is before[inode] for inode in before)
    assert after[4026532999].read("net/snmp") == b"Udp: x\nUdp: 500\n"
    assert discovery.gone_since_last_scan == set()


def test_disappeared_namespace_is_reported_and_closed(
    discovery: NetnsDiscovery, proc: Path
) -> None:
    handle = discovery.scan()[POD_B]
    shutil.rmtree(proc / "205")
    found = discovery.scan()
    assert POD_B not in found
    assert discovery.gone_since_last_scan == {POD_B}
    assert handle.closed
    with pytest.raises(NetnsGone):
        handle.read("net/snmp")
    discovery.scan()
    assert discovery.gone_since_last_scan == set()


def test_gone_since_last_scan_is_a_copy(discovery: NetnsDiscovery, proc: Path) -> None:
    discovery.scan()
    shutil.rmtree(proc / "205")
    discovery.scan()
    gone = discovery.gone_since_last_scan
    gone.clear()
    assert discovery.gone_since_last_scan == {POD_B}


def test_scan_returns_a_new_mapping(discovery: NetnsDiscovery) -> None:
    first = discovery.scan()
    first.clear()
    assert set(discovery.scan()) == {HOST, POD_A, POD_B}
    assert set(discovery.namespaces) == {HOST, POD_A, POD_B}


def test_scan_does_not_open_fds_per_cycle(discovery: NetnsDiscovery) -> None:
    discovery.scan()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        discovery.scan()
    assert len(os.listdir("/proc/self/fd")) == before


def test_close_closes_every_handle(proc: Path, tmp_path: Path) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    d = NetnsDiscovery(str(proc), str(tmp_path / "none"))
    handles = list(d.scan().values())
    assert len(os.listdir("/proc/self/fd")) == fds_before + len(handles)
    d.close()
    d.close()
    assert all(h.closed for h in handles)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert d.namespaces == {}


def test_handle_close_is_idempotent(discovery: NetnsDiscovery) -> None:
    handle = discovery.scan()[POD_A]
    handle.close()
    handle.close()
    with pytest.raises(NetnsGone, match="closed"):
        handle.read("net/snmp")
    # A handle closed by its user is replaced by a new one at the next scan.
    fresh = discovery.scan()[POD_A]
    assert fresh is not handle
    assert fresh.read("net/snmp") == snmp(100)
    assert discovery.gone_since_last_scan == set()


def test_missing_proc_root_gives_nothing(tmp_path: Path) -> None:
    with NetnsDiscovery(str(tmp_path / "absent"), str(tmp_path / "none")) as d:
        assert d.scan() == {}


def test_missing_netns_dir_is_normal(
    discovery: NetnsDiscovery, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        discovery.scan()
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]


def test_non_namespace_files_in_netns_dir_are_skipped(proc: Path, tmp_path: Path) -> None:
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir()
    (netns_dir / "cni-placeholder").write_bytes(b"")  # as left by a failed `ip netns add`
    with NetnsDiscovery(str(proc), str(netns_dir)) as d:
        assert set(d.scan()) == {HOST, POD_A, POD_B}


def test_netns_needs_a_pid_or_a_name_and_runner() -> None:
    with pytest.raises(ValueError):
        Netns(1)
    with pytest.raises(ValueError):
        Netns(1, name="x")


def test_netns_refuses_a_pid_in_another_namespace(proc: Path) -> None:
    with pytest.raises(NetnsGone):
        Netns(POD_B, pid=100, proc_root=str(proc))
    with pytest.raises(FileNotFoundError):
        Netns(POD_B, pid=999, proc_root=str(proc))


def test_open_nsfd_of_a_fixture_is_netns_gone(discovery: NetnsDiscovery) -> None:
    # The fixture ns/net links dangle: there is nothing to open, which reads as "gone".
    with pytest.raises(NetnsGone):
        discovery.scan()[POD_A].open_nsfd()


@pytest.fixture
def runner() -> Iterator[NetnsRunner]:
    r = NetnsRunner(name="kubeskoop-setns")
    yield r
    r.stop()


def named(runner: NetnsRunner, tmp_path: Path, name: str, inode: int | None = None) -> Netns:
    """A process-less handle on ``<tmp_path>/<name>`` (its inode, unless ``inode`` says otherwise)."""
    path = tmp_path / name
    return Netns(path.stat().st_ino if inode is None else inode, name=name, netns_dir=str(tmp_path),
                 runner=runner)


def test_a_named_handle_reports_a_missing_name_as_gone(runner: NetnsRunner, tmp_path: Path) -> None:
    handle = Netns(4026532999, name="ksk-absent", netns_dir=str(tmp_path), runner=runner)
    with pytest.raises(NetnsGone) as err:
        handle.read("net/dev")
    assert err.value.inode == 4026532999 and "ksk-absent" in str(err.value)
    assert not runner.running  # nothing to enter: the runner was not even started


def test_a_named_handle_reports_another_inode_as_gone(runner: NetnsRunner, tmp_path: Path) -> None:
    (tmp_path / "ksk-recreated").write_bytes(b"")
    inode = (tmp_path / "ksk-recreated").stat().st_ino + 1
    with pytest.raises(NetnsGone, match="now refers to"):
        named(runner, tmp_path, "ksk-recreated", inode=inode).read("net/dev")


def test_a_named_handle_passes_other_errors_back_and_keeps_reading(runner: NetnsRunner,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "ksk-regular-file").write_bytes(b"")
    handle = named(runner, tmp_path, "ksk-regular-file")
    for _ in range(2):
        # setns on a regular file: EINVAL (EPERM without CAP_SYS_ADMIN)
        with pytest.raises(OSError) as err:
            handle.read("net/dev")
        assert not isinstance(err.value, NetnsGone)
        assert "setns" in str(err.value) and str(handle.inode) in str(err.value)
    assert runner.running
    (thread,) = [t for t in threading.enumerate() if t.name == "kubeskoop-setns"]
    assert thread.daemon
    runner.stop()
    assert not runner.running and not thread.is_alive()


def test_the_discovery_stops_the_runner_it_made(proc: Path, tmp_path: Path) -> None:
    d = NetnsDiscovery(str(proc), str(tmp_path / "none"))
    (tmp_path / "ksk-regular-file").write_bytes(b"")
    with pytest.raises(OSError):
        named(d.runner, tmp_path, "ksk-regular-file").read("net/dev")
    assert d.runner.running
    d.close()
    assert not d.runner.running
    given = NetnsRunner()
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), runner=given) as d:
        assert d.runner is given
        with pytest.raises(OSError):
            named(given, tmp_path, "ksk-regular-file").read("net/dev")
    assert given.running  # not the discovery's to stop
    given.stop()


def test_past_max_namespaces_the_host_and_those_held_stay_and_the_rest_are_counted(
        proc: Path, tmp_path: Path) -> None:
    with NetnsDiscovery(str(proc), str(tmp_path / "none"), max_namespaces=2) as d:
        found = d.scan()
        assert set(found) == {HOST, POD_A} and d.left_out == 1  # the host, then the oldest inode
        add_pid(proc, 777, "net:[4026532280]")  # a new namespace with an older inode than POD_A's
        found = d.scan()
        assert set(found) == {HOST, POD_A} and d.left_out == 2  # the one held stays
        d.max_namespaces = 3
        assert set(d.scan()) == {HOST, POD_A, 4026532280} and d.left_out == 1
        assert d.left_out_total == 1 + 2 + 1  # summed over the scans: kubeskoop.agent.overflow
