# SPDX-License-Identifier: Apache-2.0
"""Ring-buffer records decoded through the ctypes mirrors, from bytes recorded on a real kernel.

Each ``tests/fixtures/bpf_events/*.dump`` holds comment lines (``#``), the record as hex, a line
with a single ``.``, and the expected :func:`~otel_kubeskoop.bpf.layouts.to_dict` as JSON.
The mirrors' sizes and offsets are checked against the compiled objects' BTF in
``tests/privileged/bpf/test_object_contract.py``.
"""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import layouts
from otel_kubeskoop.bpf.layouts import (
    DecodeError,
    EventLossReason,
    SelftestEvent,
    SelftestEventType,
)

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "bpf_events"


def read_dump(path: Path) -> tuple[bytes, object]:
    hex_part, _, json_part = path.read_text().partition("\n.\n")
    if not json_part:
        raise ValueError(f"{path}: no line with a single '.' between the bytes and the JSON")
    lines = [line for line in hex_part.splitlines() if line and not line.startswith("#")]
    return bytes.fromhex("".join(lines)), json.loads(json_part)


def dumps(prefix: str) -> list[Path]:
    found = sorted(DUMPS.glob(prefix + "*.dump"))
    assert found, f"no {prefix}*.dump in {DUMPS}"
    return found


@pytest.mark.parametrize("path", dumps("selftest_"), ids=lambda p: p.stem)
def test_selftest_dumps_decode_as_recorded(path: Path) -> None:
    raw, expected = read_dump(path)
    assert len(raw) == ctypes.sizeof(SelftestEvent)
    assert layouts.to_dict(layouts.decode(SelftestEvent, raw)) == expected


def test_reset_record_fields() -> None:
    raw, _ = read_dump(DUMPS / "selftest_reset_ipv4.dump")
    event = layouts.decode(SelftestEvent, raw)
    assert SelftestEventType(event.hdr.type) is SelftestEventType.SELFTEST_EVENT_RESET
    assert (event.family, event.dport) == (2, 9)
    assert bytes(event.saddr[:4]) == bytes(event.daddr[:4]) == b"\x7f\x00\x00\x01"
    assert event.comm == b"python"


def test_trailing_bytes_are_ignored_and_short_records_refused() -> None:
    raw, expected = read_dump(DUMPS / "selftest_drop_no_socket.dump")
    assert layouts.to_dict(layouts.decode(SelftestEvent, raw + bytes(8))) == expected
    with pytest.raises(DecodeError, match="SelftestEvent: 79 bytes, need 80"):
        layouts.decode(SelftestEvent, raw[:-1])


def test_mirror_tables_list_every_mirror() -> None:
    assert set(layouts.STRUCTS.values()) >= {
        layouts.EventHeader,
        layouts.FlowTuple,
        layouts.SelftestKey,
        SelftestEvent,
        layouts.PacketlossKey,
        layouts.PacketlossEvent,
        layouts.TcpresetKey,
        layouts.TcpresetEvent,
        layouts.TcpretransKey,
        layouts.TcpretransEvent,
    }
    assert EventLossReason.EVENT_LOSS__MAX == len(EventLossReason) - 1


def test_ktime_to_unix_ns() -> None:
    assert abs(layouts.ktime_to_unix_ns(time.monotonic_ns()) - time.time_ns()) < 50_000_000
