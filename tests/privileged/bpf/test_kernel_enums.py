# SPDX-License-Identifier: Apache-2.0
"""Enum names read from the running kernel's BTF through libbpf, cross-checked with bpftool's dump
of the same BTF (the C text vmlinux.h is generated from)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from otel_kubeskoop.bpf import btf

pytestmark = [pytest.mark.privileged, pytest.mark.usefixtures("kernel_btf")]

_ENUM = re.compile(r"^enum (\w*) ?\{\n(.*?)^\};", re.M | re.S)
_MEMBER = re.compile(r"^\t(\w+) = (-?\d+),?$", re.M)


@pytest.fixture(scope="module")
def bpftool_enums() -> list[tuple[str, dict[int, str]]]:
    """(name, value -> first member) of every enum in bpftool's C dump of the kernel BTF."""
    bpftool = shutil.which("bpftool")
    assert bpftool, "bpftool not installed (Debian package bpftool)"
    text = subprocess.run(
        [bpftool, "btf", "dump", "file", btf.VMLINUX_BTF, "format", "c"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    enums = []
    for match in _ENUM.finditer(text):
        values: dict[int, str] = {}
        for member, value in _MEMBER.findall(match.group(2)):
            values.setdefault(int(value), member)
        enums.append((match.group(1), values))
    return enums


def named(enums: list[tuple[str, dict[int, str]]], name: str) -> dict[int, str]:
    return next(values for enum_name, values in enums if enum_name == name)


def test_vmlinux_parses_once_and_fast() -> None:
    began = time.perf_counter()
    parsed = btf.read_btf()
    found = parsed.find("skb_drop_reason", btf.Kind.ENUM)
    elapsed = time.perf_counter() - began
    assert found is not None and parsed.name(found) == "skb_drop_reason"
    assert len(parsed) > 10_000
    assert btf.vmlinux_btf() is btf.vmlinux_btf()
    assert elapsed < 1.0
    print(f"vmlinux BTF: {len(parsed)} types, parsed and searched by name in {elapsed * 1000:.0f} ms")


def test_skb_drop_reasons(bpftool_enums) -> None:
    reasons = btf.skb_drop_reasons()
    assert reasons == named(bpftool_enums, "skb_drop_reason")
    by_name = {v: k for k, v in reasons.items()}
    assert by_name["SKB_NOT_DROPPED_YET"] == 0
    assert {"SKB_CONSUMED", "SKB_DROP_REASON_NOT_SPECIFIED", "SKB_DROP_REASON_NO_SOCKET"} <= set(
        by_name
    )


def test_sk_rst_reasons(bpftool_enums) -> None:
    if not btf.vmlinux_btf().has("sk_rst_reason", btf.Kind.ENUM):
        pytest.skip("kernel without enum sk_rst_reason (added in Linux 6.10)")
    reasons = btf.sk_rst_reasons()
    assert reasons == named(bpftool_enums, "sk_rst_reason")
    assert reasons[0] == "SK_RST_REASON_NOT_SPECIFIED"


def test_tcp_states(bpftool_enums) -> None:
    states = btf.tcp_states()
    anonymous = [
        values
        for name, values in bpftool_enums
        if not name and "TCP_ESTABLISHED" in values.values()
    ]
    assert len(anonymous) == 1, "exactly one enum declares TCP_ESTABLISHED"
    expected = {k: v for k, v in anonymous[0].items() if v != "TCP_MAX_STATES"}
    assert states == expected
    assert (
        states[1] == "TCP_ESTABLISHED"
        and states[2] == "TCP_SYN_SENT"
        and states[10] == "TCP_LISTEN"
    )
