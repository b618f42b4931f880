# SPDX-License-Identifier: Apache-2.0
"""Helpers for the conntrack table tests, the fixture recorder and bench/conntrack_dump.py.

- :func:`snat_topology`: three throw-away namespaces, ``pod`` -> ``router`` -> ``dest``, where the
  router forwards and masquerades the pod's subnet towards ``dest`` (nftables), as a node does for
  its pods' traffic leaving the cluster. Every address lives only inside these namespaces.
- :func:`conntrack_list`: ``conntrack -L`` (conntrack-tools) in a namespace, parsed: the
  independent reading the agent's decode is checked against.
- :func:`hold_tcp_to`: a process holding TCP connections from one namespace to a listener in
  another (:func:`listen`), until it is stopped.
- :func:`insert_entries`: many entries at once through ctnetlink ``IPCTNL_MSG_CT_NEW``, what
  ``conntrack -I`` does one process per entry.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2.netlink import NETLINK_NETFILTER, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_NEW, nfct_msg

from otel_kubeskoop.netlink.core import encode, iter_messages
from otel_kubeskoop.netlink.sockets import receive
from tests.privileged.netnsutil import TestNetns, netns, veth_pair
from tests.privileged.probes.netlinkutil import netlink_socket

POD, ROUTER_IN, ROUTER_OUT, DEST = "10.234.1.2", "10.234.1.1", "10.234.2.1", "10.234.2.2"


@dataclass
class SnatTopology:
    pod: TestNetns
    router: TestNetns
    dest: TestNetns


@contextlib.contextmanager
def snat_topology(to_ports: str | None = None) -> Iterator[SnatTopology]:
    """pod (10.234.1.2) -- router (10.234.1.1 | 10.234.2.1) -- dest (10.234.2.2); the router
    masquerades what comes from 10.234.1.0/24 and leaves towards dest, to source ports
    ``to_ports`` ("first-last") if given. IPv6 is off on the veths."""
    with netns() as pod, netns() as router, netns() as dest:
        for ns in (pod, router, dest):
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        with veth_pair(pod, router, f"{POD}/24", f"{ROUTER_IN}/24"), \
                veth_pair(router, dest, f"{ROUTER_OUT}/24", f"{DEST}/24") as (out_dev, _):
            pod.run("ip", "route", "add", "default", "via", ROUTER_IN)
            router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            router.run("nft", "add table ip ksknat; "
                       "add chain ip ksknat post { type nat hook postrouting priority 100; }; "
                       f"add rule ip ksknat post ip saddr 10.234.1.0/24 oifname {out_dev}"
                       + (f" meta l4proto {{ tcp, udp }} masquerade to :{to_ports}" if to_ports else " masquerade"))
            yield SnatTopology(pod, router, dest)


@dataclass(frozen=True)
class CtLine:
    """One line of ``conntrack -L``: the original and reply tuples, the state, the flags."""

    protocol: int
    state: str | None  # lower case, TCP/SCTP only
    orig: dict[str, str]
    reply: dict[str, str]
    flags: frozenset[str]


def conntrack_list(ns: TestNetns, *args: str, families: tuple[str, ...] = ("ipv4", "ipv6")) -> list[CtLine]:
    """``conntrack -L -f FAMILY ARGS`` in ``ns`` for each of ``families``, parsed."""
    out = []
    for family in families:
        text = ns.run("conntrack", "-L", "-f", family, *args).stdout
        for line in text.splitlines():
            words = line.split()
            pairs = [w.split("=", 1) for w in words[3:] if "=" in w]
            keys = [k for k, _ in pairs]
            second = keys.index("src", 1)
            state = words[3].lower() if "=" not in words[3] and not words[3].startswith("[") else None
            out.append(CtLine(int(words[1]), state, dict(pairs[:second]), dict(pairs[second:]),
                              frozenset(w.strip("[]") for w in words if w.startswith("["))))
    return out


def by_source(lines: list[CtLine]) -> Counter[tuple[str, int, str | None]]:
    """Entries by (original source, protocol, state), as TableSummary.sources() counts them."""
    return Counter((ipaddress.ip_address(c.orig["src"]).compressed, c.protocol, c.state) for c in lines)


_LISTEN = r'''
import socket, sys
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind((sys.argv[1], int(sys.argv[2]))); lst.listen(4096)
print("ready", flush=True)
sys.stdin.read()
'''

_HOLD = r'''
import resource, socket, sys
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
keep = []
for _ in range(int(sys.argv[3])):
    if sys.argv[4] == "wait":
        keep.append(socket.create_connection((sys.argv[1], int(sys.argv[2]))))
    else:  # send the SYN and go on
        s = socket.socket(); s.setblocking(False); s.connect_ex((sys.argv[1], int(sys.argv[2]))); keep.append(s)
print("ready", flush=True)
sys.stdin.read()
'''


def _started(ns: TestNetns, code: str, *argv: str) -> subprocess.Popen[bytes]:
    proc = ns.popen(sys.executable, "-c", code, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", f"{argv} did not start"
    return proc


def listen(ns: TestNetns, host: str, port: int) -> subprocess.Popen[bytes]:
    """A TCP listener with a deep backlog that never accepts: connections stay established."""
    return _started(ns, _LISTEN, host, str(port))


def hold_tcp_to(ns: TestNetns, host: str, port: int, count: int, wait: bool = True) -> subprocess.Popen[bytes]:
    """``count`` TCP connections from ``ns`` to host:port, held until the process is stopped;
    ``wait=False``: each connect only started (its SYN sent), whether it completes or not."""
    return _started(ns, _HOLD, host, str(port), str(count), "wait" if wait else "start")


TCP_ESTABLISHED = 3  # TCP_CONNTRACK_ESTABLISHED
TRANSLATED = "10.237.0.1"


def _entry_request(seq: int, protocol: int, src: str, dst: str, sport: int, dport: int, timeout: int,
                   nat_port: int | None) -> bytes:
    """An ``IPCTNL_MSG_CT_NEW`` making one entry: TCP (established) or UDP, source-NATed to
    TRANSLATED:``nat_port`` when that is given, as ``conntrack -I ... --src-nat`` does."""
    def tup(a: str, b: str, pa: int, pb: int) -> dict:
        return {"attrs": [("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", a), ("CTA_IP_V4_DST", b)]}),
                          ("CTA_TUPLE_PROTO", {"attrs": [("CTA_PROTO_NUM", protocol),
                                                         ("CTA_PROTO_SRC_PORT", pa), ("CTA_PROTO_DST_PORT", pb)]})]}
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_INET
    attrs = [("CTA_TUPLE_ORIG", tup(src, dst, sport, dport)), ("CTA_TUPLE_REPLY", tup(dst, src, dport, sport)),
             ("CTA_TIMEOUT", timeout)]
    if protocol == socket.IPPROTO_TCP:
        attrs.append(("CTA_PROTOINFO", {"attrs": [("CTA_PROTOINFO_TCP", {"attrs": [
            ("CTA_PROTOINFO_TCP_STATE", TCP_ESTABLISHED)]})]}))
    if nat_port is not None:
        attrs.append(("CTA_NAT_SRC", {"attrs": [
            ("CTA_NAT_V4_MINIP", TRANSLATED), ("CTA_NAT_V4_MAXIP", TRANSLATED),
            ("CTA_NAT_PROTO", {"attrs": [("CTA_PROTONAT_PORT_MIN", nat_port), ("CTA_PROTONAT_PORT_MAX", nat_port)]})]}))
    msg["attrs"] = attrs
    return encode(msg, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
                  NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq)


def source_address(host: int) -> str:
    """The address of source ``host`` in :func:`insert_entries`."""
    return f"10.235.{host >> 8}.{host & 0xFF}"


def insert_entries(ns: TestNetns, count: int, sources: int = 100, nat_every: int = 2, timeout: int = 600,
                   batch: int = 200) -> None:
    """``count`` entries in ``ns``'s table: two in three TCP (established) to port 443, one in three
    UDP to port 53, from ``sources`` addresses (:func:`source_address`) to ten destinations
    10.236.0.1-10; one in ``nat_every`` source-NATed to TRANSLATED (0: none), each with a port of
    its own. They live ``timeout`` seconds. Every insert is acknowledged, or this raises."""
    with netlink_socket(ns, NETLINK_NETFILTER) as sock:
        sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: room for a batch of ACKs
        seq = 0
        while seq < count:
            requests = []
            for _ in range(min(batch, count - seq)):
                seq += 1
                tcp = seq % 3 != 0
                nat = nat_every and seq % nat_every == 0
                requests.append(_entry_request(
                    seq, socket.IPPROTO_TCP if tcp else socket.IPPROTO_UDP, source_address(seq % sources),
                    f"10.236.0.{seq % 10 + 1}", 1024 + seq // sources, 443 if tcp else 53, timeout,
                    1024 + (seq // 10) % 64000 if nat else None))
            sock.send(b"".join(requests))
            acked = 0
            for datagram in receive(sock, what="conntrack insert"):
                for msg in iter_messages(datagram):
                    code = int.from_bytes(datagram[msg.start:msg.start + 4], "little", signed=True)
                    if code:
                        raise OSError(-code, f"conntrack insert {msg.seq} refused")
                    acked += 1
                if acked == len(requests):
                    break
