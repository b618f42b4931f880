# SPDX-License-Identifier: Apache-2.0
"""Tests for otel_kubeskoop.procfs.sys_infiniband over tests/fixtures/sys/class/infiniband.

mlx5_0 is a ConnectX RoCE port (IB PMA ``counters/`` and mlx5 ``hw_counters/``); erdma_0 an
Alibaba Cloud eRDMA (iWARP) port with ``hw_counters/`` only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.procfs import sys_infiniband as ib

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SYS = FIXTURES / "sys"
IB = SYS / "class" / "infiniband"


def test_devices_ports_and_types() -> None:
    assert ib.list_devices(str(SYS)) == ["erdma_0", "mlx5_0"]
    assert ib.list_ports(str(SYS), "mlx5_0") == [1]
    assert [ib.device_type(n) for n in ("mlx5_0", "mlx5_bond_0", "erdma_1", "rxe0", "irdma0")] == [
        "mlx5", "mlx5", "erdma", "unknown", "unknown"]


def test_no_rdma(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        ib.list_devices(str(tmp_path))


def test_mlx5_port_counters_both_directories() -> None:
    got = ib.read_port_counters(str(SYS), "mlx5_0", 1)
    port = IB / "mlx5_0" / "ports" / "1"
    files = {p.name: int(p.read_text()) for d in ("counters", "hw_counters") for p in (port / d).iterdir()}
    assert got == files
    assert got["port_rcv_data"] == 48213992107 and got["VL15_dropped"] >= 0 and got["np_cnp_sent"] == 90111


def test_erdma_has_hw_counters_only() -> None:
    got = ib.read_port_counters(str(SYS), "erdma_0", 1)
    assert got["hw_rx_bytes_cnt"] == 7340032000 and "port_rcv_data" not in got
    assert len(got) == 56  # 55 driver counters and lifespan


def test_malformed_counter_is_left_out_and_reported(tmp_path) -> None:
    shutil.copytree(SYS, tmp_path / "sys")
    target = tmp_path / "sys/class/infiniband/mlx5_0/ports/1/counters/symbol_error"
    shutil.copyfile(FIXTURES / "proc_malformed" / "sys" / "counter_not_a_number", target)
    errors: list[BaseException] = []
    got = ib.read_port_counters(str(tmp_path / "sys"), "mlx5_0", 1, errors)
    assert "symbol_error" not in got and "link_downed" in got
    assert len(errors) == 1 and isinstance(errors[0], ParseError) and errors[0].path == str(target)


def test_missing_port_raises() -> None:
    with pytest.raises(FileNotFoundError):
        ib.read_port_counters(str(SYS), "mlx5_0", 2)


def test_parse_counter() -> None:
    assert ib.parse_counter(b" 42\n", "f") == 42
    for bad in (b"", b"-1\n", b"0x10\n", b"N/A\n"):
        with pytest.raises(ParseError):
            ib.parse_counter(bad, "f")
