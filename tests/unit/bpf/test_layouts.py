# SPDX-License-Identifier: Apache-2.0
"""Ring-buffer records decoded through the generated ctypes mirrors, from bytes recorded on a real
kernel.

Each ``tests/fixtures/bpf_events/*.dump`` holds comment lines (``#``), the record as hex, a line
with a single ``.``, and the expected :func:`~otel_kubeskoop.bpf.records.to_dict` as JSON.
The mirrors are generated from the objects' BTF (``tests/unit/bpf/test_generated.py``).
"""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import records
from otel_kubeskoop.bpf.generated.selftest import SelftestEvent, SelftestEventType
from otel_kubeskoop.bpf.records import DecodeError

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
    assert records.to_dict(records.decode(SelftestEvent, raw)) == expected


def test_reset_record_fields() -> None:
    raw, _ = read_dump(DUMPS / "selftest_reset_ipv4.dump")
    event = records.decode(SelftestEvent, raw)
    assert SelftestEventType(event.hdr.type) is SelftestEventType.SELFTEST_EVENT_RESET
    assert (event.family, event.dport) == (2, 9)
    assert bytes(event.saddr[:4]) == bytes(event.daddr[:4]) == b"\x7f\x00\x00\x01"
    assert event.comm == b"python"


def test_trailing_bytes_are_ignored_and_short_records_refused() -> None:
    raw, expected = read_dump(DUMPS / "selftest_drop_no_socket.dump")
    assert records.to_dict(records.decode(SelftestEvent, raw + bytes(8))) == expected
    with pytest.raises(DecodeError, match="SelftestEvent: 79 bytes, need 80"):
        records.decode(SelftestEvent, raw[:-1])


def test_exact_decoding_refuses_any_other_length() -> None:
    raw, expected = read_dump(DUMPS / "selftest_drop_no_socket.dump")
    assert records.to_dict(records.decode_exact(SelftestEvent, raw)) == expected
    with pytest.raises(DecodeError, match="SelftestEvent: record of 88 bytes, expected 80"):
        records.decode_exact(SelftestEvent, raw + bytes(8))


def test_ktime_to_unix_ns() -> None:
    assert abs(records.ktime_to_unix_ns(time.monotonic_ns()) - time.time_ns()) < 50_000_000
