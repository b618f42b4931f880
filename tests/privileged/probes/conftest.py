# SPDX-License-Identifier: Apache-2.0
"""Run eBPF probes as the agent would, without the agent: a ProbeContext whose namespaces come from
the real discovery, whose events land in a list, and whose ring buffers are pumped by a local
epoll loop. Traffic is made in throw-away namespaces (``tests/privileged/netnsutil.py``).

Other processes on this machine make drops and resets too (in the host namespace and in
namespaces other tests made): every assertion here is on the namespaces the test made.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_kubeskoop.probe import Cycle, Event, ProbeContext, ProbeSpec
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
from tests.privileged.netnsutil import TestNetns

Series = dict[tuple[str, int | None, tuple[tuple[str, Any], ...]], int | float]


class Harness:
    """Probes started with a real namespace scan, an event list and an epoll pump."""

    def __init__(self) -> None:
        self.discovery = NetnsDiscovery()
        self.cycle = Cycle(namespaces=self.discovery.scan())
        self.events: list[Event] = []
        self.probes: dict[str, Any] = {}
        self.contexts: dict[str, ProbeContext] = {}
        self._epoll = select.epoll()
        self._consumers: dict[int, Callable[[], int]] = {}
        self._fds: dict[str, set[int]] = {}

    def start(self, spec: ProbeSpec, args: Any = None, events: bool = True,
              factory: type | None = None) -> Any:
        ctx = ProbeContext(name=spec.name, cycle=self.cycle, events_enabled=events,
                           emit=self.events.append, watch=self._watch)
        probe = (factory or spec.factory)(args if args is not None else spec.args(), ctx)
        before = set(self._consumers)
        began = time.perf_counter()
        probe.start()
        self.start_seconds = time.perf_counter() - began
        self.probes[spec.name] = probe
        self.contexts[spec.name] = ctx
        self._fds[spec.name] = set(self._consumers) - before
        return probe

    def stop(self, name: str) -> None:
        """Stop one probe (after taking its ring buffer out of the pump, as the runtime would)."""
        for fd in self._fds.pop(name, ()):
            self._epoll.unregister(fd)
            del self._consumers[fd]
        self.probes.pop(name).stop()

    def _watch(self, fd: int, consume: Callable[[], int]) -> None:
        self._consumers[fd] = consume
        self._epoll.register(fd, select.EPOLLIN)

    def drain(self, timeout: float = 0.3) -> None:
        """Pump every ring buffer until none has had anything for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self._epoll.poll(0.05)
            got = 0
            for fd, _ in ready:
                got += self._consumers[fd]()
            for consume in self._consumers.values():  # epoll is edge-ish: consume anyway
                got += consume()
            if got:
                deadline = time.monotonic() + timeout

    def rescan(self) -> None:
        self.cycle.namespaces = self.discovery.scan()

    def collect(self, name: str) -> Series:
        """One collection of probe ``name`` after a fresh namespace scan, as a dict."""
        self.rescan()
        out: Series = {}
        for s in self.probes[name].collect():
            key = (s.instrument.name, s.netns, s.attributes)
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
        return out

    def series(self, name: str, netns: int, instrument: str | None = None) -> dict[tuple[tuple[str, Any], ...], int | float]:
        """{attributes: value} of probe ``name`` in namespace ``netns``."""
        return {attrs: v for (inst, ns, attrs), v in self.collect(name).items()
                if ns == netns and (instrument is None or inst == instrument)}

    def events_in(self, netns: int, name: str | None = None) -> list[Event]:
        return [e for e in self.events if e.netns == netns and (name is None or e.name == name)]

    def close(self) -> None:
        for probe in self.probes.values():
            probe.stop()
            probe.stop()  # idempotent
        self._epoll.close()
        self.discovery.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without BTF (CONFIG_DEBUG_INFO_BTF): the eBPF probes need it")
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def attrs(event: Event) -> dict[str, Any]:
    return dict(event.attributes)


# --- traffic helpers --------------------------------------------------------------------------


def require_iptables() -> None:
    # `make setup` installs it: missing, the set-up is broken, not the kernel.
    assert shutil.which("iptables"), "iptables missing: `make setup` installs the Debian package iptables"


def no_ipv6(*namespaces: TestNetns) -> None:
    """Turn IPv6 off in test namespaces about to get a veth: no router solicitations or MLD
    reports, whose drops (IP_INNOROUTES) would otherwise mix with the ones a test counts."""
    for ns in namespaces:
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")


_CONNECT_TIMES_OUT = """
import socket
s = socket.socket()
s.settimeout({timeout})
try:
    s.connect(({addr!r}, {port}))
    raise SystemExit("connected although the test drops the handshake")
except TimeoutError:
    print("timed out, as the dropped handshake makes it")
"""


def connect_times_out(ns: TestNetns, addr: str, port: int, timeout: float = 2.5) -> None:
    """A TCP connect from ``ns`` whose handshake the test drops (a SYN or SYN-ACK DROP rule): it
    must time out, after the kernel has retransmitted; anything else fails the test."""
    ns.python(_CONNECT_TIMES_OUT.format(addr=addr, port=port, timeout=timeout), timeout=timeout + 8)


def iptables(ns: TestNetns, *rule: str) -> None:
    ns.run("iptables", "-w", *rule)


def snmp_tcp(ns: TestNetns, field: str) -> int:
    """A ``Tcp:`` counter of the namespace's /proc/net/snmp."""
    text = ns.run("cat", "/proc/net/snmp").stdout
    header, values = [line.split() for line in text.splitlines() if line.startswith("Tcp:")][:2]
    return int(dict(zip(header, values))[field])


def serve(ns: TestNetns, host: str, port: int, accept: bool = True) -> subprocess.Popen[bytes]:
    """A TCP listener inside ``ns`` (accepting one connection and holding it), ready on return."""
    code = (
        "import socket, sys, time\n"
        f"s = socket.create_server(({host!r}, {port}), family=socket.AF_INET6 if ':' in {host!r} else socket.AF_INET)\n"
        "print('ready', flush=True)\n"
        + ("c, _ = s.accept()\n" if accept else "")
        + "time.sleep(60)\n"
    )
    proc = ns.popen(sys.executable, "-c", code, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


# A TCP segment with only ACK set, sent through a raw socket: a listening socket answers it with a
# RST from tcp_v4_send_reset() with sk = the listener (a PROCESS reset, reason TCP_FLAGS).
RAW_ACK = r'''
import socket, struct

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

src, dst, sport, dport = "127.0.0.1", "127.0.0.1", 40000, {port}
tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, 0x10, 65535, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for _ in range({count}):
    raw.sendto(tcp, (dst, 0))
'''

TCP6_REFUSED = """
import socket
for _ in range({count}):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        s.connect(("::1", {port}))
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("connect to [::1]:{port} succeeded")
    finally:
        s.close()
"""


def tcp6_refused(ns: TestNetns, count: int, port: int = 9) -> None:
    """``count`` TCP connects to [::1]:``port`` (nothing listening) inside ``ns``."""
    ns.python(TCP6_REFUSED.format(count=count, port=port))


def is_symbol(text: str, function: str) -> bool:
    """``text`` is ``function+0x<offset>`` (as /proc/kallsyms names it)."""
    return re.fullmatch(re.escape(function) + r"\+0x[0-9a-f]+", text) is not None
