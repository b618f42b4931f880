# SPDX-License-Identifier: Apache-2.0
"""Helpers for privileged tests: throw-away network namespaces, veth pairs and traffic.

Everything made here has a unique ``ksk-`` name with a random suffix and is removed at exit even
when the test fails, so the tests can run twice, or in parallel, on one machine::

    require_root()

    def test_x():
        with netns() as a, netns() as b, veth_pair(a, b):
            a.sleeper()
            udp_to_closed_port(a, 7)

Addresses given to veth pairs exist only inside the test's namespaces and are never routed outside.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

IP = "ip"
NAME_PREFIX = "ksk-"
_PROC_TIMEOUT = 5.0


def require_root() -> None:
    """Skip the calling module unless running as root with iproute2's ``ip`` available."""
    if os.geteuid() != 0:
        pytest.skip(
            "needs root: creating network namespaces needs CAP_SYS_ADMIN", allow_module_level=True
        )
    if shutil.which(IP) is None:
        pytest.skip("needs iproute2: the 'ip' tool is not on PATH", allow_module_level=True)


def unique_name(prefix: str = NAME_PREFIX, length: int = 8) -> str:
    """``prefix`` plus ``length`` random hex characters."""
    return prefix + secrets.token_hex((length + 1) // 2)[:length]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` and return its result; a failure raises with ip's stderr in the message."""
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def netns_inode_of_pid(pid: int) -> int | None:
    """The network namespace inode of ``pid``, or ``None`` if it cannot be read."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class TestNetns:
    """A named network namespace made by :func:`netns`, with ``lo`` up."""

    __test__ = False  # not a test class, although its name starts with "Test"

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        self.inode = os.stat(self.path).st_ino
        self._procs: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"<TestNetns {self.name} inode={self.inode}>"

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace (``ip netns exec``) and wait; output is captured."""
        result = subprocess.run(
            [IP, "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"in {self.name}: {' '.join(argv)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def popen(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace; it is killed and reaped when the namespace goes.

        ``ip netns exec`` execs the command in place, so the returned pid is the command's own.
        """
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            [IP, "netns", "exec", self.name, *argv], **kwargs
        )
        self._procs.append(proc)
        return proc

    def sleeper(self) -> subprocess.Popen[bytes]:
        """Start ``sleep infinity`` inside, and return once it is in the namespace."""
        proc = self.popen("sleep", "infinity")
        deadline = time.monotonic() + _PROC_TIMEOUT
        while netns_inode_of_pid(proc.pid) != self.inode:
            if proc.poll() is not None:
                raise RuntimeError(f"sleeper in {self.name} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sleeper {proc.pid} did not enter {self.name}")
            time.sleep(0.005)
        return proc

    def python(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``sys.executable -c code`` inside the namespace; a non-zero exit raises."""
        return self.run(sys.executable, "-c", code, timeout=timeout)

    def pids(self) -> list[int]:
        """Pids of the processes inside (``ip netns pids``)."""
        out = ip("netns", "pids", self.name, check=False).stdout
        return [int(word) for word in out.split() if word.isdigit()]

    def _cleanup(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(_PROC_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        strays = self.pids()
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + _PROC_TIMEOUT
        while strays and time.monotonic() < deadline:
            # Not our children: wait until they are gone (or are zombies, which left the namespace).
            strays = [pid for pid in strays if netns_inode_of_pid(pid) == self.inode]
            time.sleep(0.01)


@contextmanager
def netns(name: str | None = None) -> Iterator[TestNetns]:
    """A new named network namespace with ``lo`` up, deleted (and emptied of processes) at exit."""
    name = name or unique_name()
    ip("netns", "add", name)
    ns: TestNetns | None = None
    try:
        ns = TestNetns(name)
        ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        if ns is not None:
            ns._cleanup()
        ip("netns", "del", name, check=False)


@contextmanager
def veth_pair(
    ns_a: TestNetns,
    ns_b: TestNetns,
    addr_a: str = "10.231.0.1/24",
    addr_b: str = "10.231.0.2/24",
    prefix: str = "ksk",
) -> Iterator[tuple[str, str]]:
    """A veth pair with one end in each namespace, addressed and up; yields the two device names."""
    if len(prefix) > 10:
        raise ValueError(f"prefix {prefix!r} leaves too few random characters in 15")
    stem = unique_name(prefix, 15 - len(prefix) - 1)  # IFNAMSIZ 16 with the NUL
    dev_a, dev_b = stem + "a", stem + "b"
    ip(
        "link", "add", dev_a, "netns", ns_a.name,
        "type", "veth", "peer", "name", dev_b, "netns", ns_b.name,
    )
    try:
        ip("-n", ns_a.name, "addr", "add", addr_a, "dev", dev_a)
        ip("-n", ns_b.name, "addr", "add", addr_b, "dev", dev_b)
        ip("-n", ns_a.name, "link", "set", dev_a, "up")
        ip("-n", ns_b.name, "link", "set", dev_b, "up")
        yield dev_a, dev_b
    finally:
        # Deleting one end deletes both; a namespace already gone took its end with it.
        ip("-n", ns_a.name, "link", "del", dev_a, check=False)


_UDP_CODE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"ksk", ("127.0.0.1", {port}))
s.close()
"""

_TCP_CODE = """
import socket
for _ in range({count}):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", {port}))
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("connect to 127.0.0.1:{port} succeeded; expected ECONNREFUSED")
    finally:
        s.close()
"""


def udp_to_closed_port(ns: TestNetns, count: int, port: int = 9) -> None:
    """Send ``count`` UDP datagrams to 127.0.0.1:``port`` (nothing listening) inside ``ns``.

    Verified on Linux 6.18: each datagram adds exactly 1 to ``Udp: NoPorts`` and ``Udp:
    OutDatagrams`` of that namespace's ``net/snmp`` (and 1 each to ``Icmp: OutDestUnreachs`` /
    ``InDestUnreachs``, since loopback is exempt from ICMP rate limiting), and nothing in any other
    namespace.
    """
    ns.python(_UDP_CODE.format(count=count, port=port))


def tcp_refused(ns: TestNetns, count: int, port: int = 9) -> None:
    """Make ``count`` TCP connects to 127.0.0.1:``port`` (nothing listening) inside ``ns``.

    Each gets ECONNREFUSED. Verified on Linux 6.18, per connect, in that namespace's ``net/snmp``:
    ``Tcp: ActiveOpens`` +1, ``Tcp: AttemptFails`` +1, ``Tcp: OutRsts`` +1 (the RST answering the
    SYN), ``Tcp: InSegs`` +2 and ``Tcp: OutSegs`` +2 (SYN and RST both loop back). No ``TcpExt``
    counter in ``net/netstat`` moves.
    """
    ns.python(_TCP_CODE.format(count=count, port=port))
