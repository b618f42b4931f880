# SPDX-License-Identifier: Apache-2.0
"""RDMA netlink resource-summary decoding against tests/fixtures/netlink/rdma_res_get_*.dump.

Each dump holds comment lines, the bytes as hex, a line with a single '.', and the expected decode
as JSON (the same format as tests/fixtures/bpf_events).
"""

from __future__ import annotations

import dataclasses
import errno
import struct
from pathlib import Path

import pytest

from otel_kubeskoop.netlink import rdma
from tests.unit.bpf.test_layouts import read_dump

DUMPS = Path(__file__).resolve().parents[2] / "fixtures" / "netlink"


@pytest.mark.parametrize("path", sorted(DUMPS.glob("rdma_res_get_*.dump")), ids=lambda p: p.stem)
def test_decode_dump(path: Path) -> None:
    raw, expected = read_dump(path)
    devices, done = rdma.decode_res_summary(raw)
    assert {"done": done, "devices": [dataclasses.asdict(d) for d in devices]} == expected


def test_request_is_a_dump_of_res_get() -> None:
    req = rdma.res_get_dump_request(7)
    assert struct.unpack("=IHHII", req) == (16, (5 << 10) + 9, 0x301, 7, 0)


def test_messages_split_over_reads_report_not_done() -> None:
    raw, _ = read_dump(DUMPS / "rdma_res_get_x86.dump")
    first_len = struct.unpack_from("=I", raw)[0]
    devices, done = rdma.decode_res_summary(raw[:first_len])
    assert [d.name for d in devices] == ["mlx5_0"] and not done


def test_error_message_raises_oserror() -> None:
    err = struct.pack("=IHHII", 36, rdma.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EOPNOTSUPP) + b"\0" * 16
    with pytest.raises(OSError) as exc:
        rdma.decode_res_summary(err)
    assert exc.value.errno == errno.EOPNOTSUPP


@pytest.mark.parametrize("cut", [3, 40])
def test_partial_trailing_message_raises(cut: int) -> None:
    raw, _ = read_dump(DUMPS / "rdma_res_get_x86.dump")
    first_len = struct.unpack_from("=I", raw)[0]
    with pytest.raises(rdma.DecodeError):
        rdma.decode_res_summary(raw[:first_len + cut])


def test_attribute_longer_than_its_message_raises() -> None:
    raw, _ = read_dump(DUMPS / "rdma_res_get_x86.dump")
    broken = bytearray(raw[:struct.unpack_from("=I", raw)[0]])
    struct.pack_into("=H", broken, 16, 0xFFF0)  # the first attribute claims more than there is
    with pytest.raises(rdma.DecodeError, match="past its container"):
        rdma.decode_res_summary(bytes(broken))


def test_nested_flag_is_masked() -> None:
    entry = _attr(17, b"qp\0") + _attr(18, struct.pack("=Q", 5))
    summary = _attr(16 | 0x8000, entry)
    body = _attr(1, struct.pack("=I", 3)) + _attr(2, b"rxe0\0") + _attr(15 | 0x8000, summary)
    msg = struct.pack("=IHHII", 16 + len(body), rdma.RES_GET_TYPE, 2, 1, 0) + body
    (dev,), done = rdma.decode_res_summary(msg)
    assert dev == rdma.ResSummary(3, "rxe0", {"qp": 5}) and not done


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)
