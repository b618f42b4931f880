# SPDX-License-Identifier: Apache-2.0
"""Fakes for the per-peer maps of tcprtt and tcpconnect (``bpf/include/remote.bpf.h``): a hash
the probe drains every collection, and its keys."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from otel_kubeskoop.bpf.generated.common import RemoteKey
from tests.unit.probes.bpfdumps import FakeMap


class DrainMap:
    """A ``remotes`` map: :meth:`pop_all` hands over what the kernel put there since the last
    call; :meth:`put` is the kernel's side."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any]] = []
        self.drains = 0

    def put(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def pop_all(self) -> list[tuple[Any, Any]]:
        self.drains += 1
        out, self.entries = self.entries, []
        return out


def remote_key(netns: int, ip: str, cookie: int = 3) -> RemoteKey:
    """The key of a peer at ``ip`` seen from namespace ``netns``."""
    addr = ipaddress.ip_address(ip)
    key = RemoteKey(netns=netns, netns_cookie=cookie,
                    family=socket.AF_INET if addr.version == 4 else socket.AF_INET6)
    key.addr[:len(addr.packed)] = addr.packed
    return key


def remote_maps(full: int = 0) -> tuple[DrainMap, dict[str, Any]]:
    """A drained ``remotes`` map and the maps to add to a fake object for it."""
    drain = DrainMap()
    return drain, {"remotes": drain, "remotes_full": FakeMap({0: full})}
