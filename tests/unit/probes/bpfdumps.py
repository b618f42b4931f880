# SPDX-License-Identifier: Apache-2.0
"""Read the eBPF probes' recorded ring-buffer records (``tests/fixtures/bpf_events/<probe>_*.dump``,
written by ``tests/privileged/probes/record_dumps.py``): the bytes, the record as JSON, the kernel
names the decoder needs, and the Event they decode to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_kubeskoop.bpf.kallsyms import Kallsyms
from otel_kubeskoop.probe import Event
from otel_kubeskoop.probes._decode import KernelNames

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "bpf_events"


@dataclass
class Dump:
    path: Path
    raw: bytes
    record: dict[str, Any]
    names: KernelNames
    kallsyms: Kallsyms
    event: dict[str, Any]


def read(path: Path) -> Dump:
    hex_part, _, json_part = path.read_text().partition("\n.\n")
    if not json_part:
        raise ValueError(f"{path}: no line with a single '.' between the bytes and the JSON")
    lines = [line for line in hex_part.splitlines() if line and not line.startswith("#")]
    body = json.loads(json_part)
    kernel = body["kernel"]
    names = KernelNames(
        drop_reasons={int(k): v for k, v in kernel.get("skb_drop_reason", {}).items()},
        rst_reasons={int(k): v for k, v in kernel.get("sk_rst_reason", {}).items()},
        tcp_states={int(k): v for k, v in kernel.get("tcp_states", {}).items()},
    )
    return Dump(path, bytes.fromhex("".join(lines).replace(" ", "")), body["record"], names,
                Kallsyms(lines=kernel.get("kallsyms", [])), body["event"])


def dumps(probe: str) -> list[Path]:
    found = sorted(DUMPS.glob(f"{probe}_*.dump"))
    assert found, f"no {probe}_*.dump in {DUMPS}"
    return found


def as_json(event: Event) -> dict[str, Any]:
    """An Event in the dump's JSON shape (tuples as lists)."""
    return {
        "name": event.name,
        "upstream_type": event.upstream_type,
        "netns": event.netns,
        "attributes": [[k, list(v) if isinstance(v, tuple) else v] for k, v in event.attributes],
        "timestamp_ns": event.timestamp_ns,
    }


class FakeMap:
    """A counters/losses map as BPFMap shows it: items(), lookup(), delete(). ``entries``: a dict
    of int keys, or (ctypes key, value) pairs (ctypes structs are not hashable)."""

    def __init__(self, entries: dict[int, int] | list[tuple[Any, int]]) -> None:
        self.entries: list[tuple[Any, int]] = list(entries.items() if isinstance(entries, dict) else entries)
        self.deleted: list[Any] = []

    def items(self) -> list[tuple[Any, int]]:
        return list(self.entries)

    def lookup(self, key: Any) -> int | None:
        return next((v for k, v in self.entries if k == key), None)

    def delete(self, key: Any) -> bool:
        for i, (k, _) in enumerate(self.entries):
            if bytes(k) == bytes(key):
                del self.entries[i]
                self.deleted.append(key)
                return True
        return False


def flow_tuple(src: str, dst: str, protocol: int, sport: int = 0, dport: int = 0) -> Any:
    """A ``struct flow_tuple`` of two IPv4 addresses (the key of a probe's ``tuples`` map)."""
    import socket

    from otel_kubeskoop.bpf.generated.common import FlowTuple

    t = FlowTuple(family=socket.AF_INET, protocol=protocol, sport=sport, dport=dport)
    t.saddr[:4] = socket.inet_aton(src)
    t.daddr[:4] = socket.inet_aton(dst)
    return t


class FakeObject:
    """Stands in for a loaded BPFObject: maps by name, closed once."""

    def __init__(self, maps: dict[str, FakeMap]) -> None:
        self.maps = maps
        self.chosen: dict[str, Any] = {}
        self.closed = 0

    def map(self, name: str, *args: Any, **kwargs: Any) -> Any:
        found = self.maps[name]
        return found.typed(*args) if hasattr(found, "typed") else found

    def close(self) -> None:
        self.closed += 1
