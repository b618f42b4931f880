# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the BPF tests: the built objects (``make -C bpf``), and helpers around them."""

from __future__ import annotations

import ctypes
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from otel_kubeskoop.bpf.generated.selftest import SelftestKey
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.bpf.objects import ObjectNotBuilt, object_path
from otel_kubeskoop.bpf.ringbuf import RingBuffer
from otel_kubeskoop.bpf.selftest import COUNTS_MAP

REPO = Path(__file__).resolve().parents[3]
#: test-only object, never shipped: selftest plus a program the verifier rejects
BROKEN_OBJECT = REPO / "bpf" / ".output" / "selftest_broken.bpf.o"


@pytest.fixture(scope="session")
def selftest_path() -> str:
    try:
        return object_path("selftest")
    except ObjectNotBuilt as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def broken_path() -> str:
    if not BROKEN_OBJECT.is_file():
        pytest.fail(f"{BROKEN_OBJECT} is not built: run `make -C bpf`")
    return str(BROKEN_OBJECT)


@pytest.fixture(scope="session")
def kernel_btf() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without BTF (CONFIG_DEBUG_INFO_BTF)")


def drain(ringbuf: RingBuffer, timeout: float = 10.0) -> None:
    """Poll until a poll finds nothing more; fails if records still arrive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while ringbuf.poll(50) > 0:
        if time.monotonic() > deadline:
            pytest.fail(f"ring buffer {ringbuf.name} still receiving after {timeout:.0f} s")


def counts_by_key(obj: BPFObject) -> Counter[tuple[int, int]]:
    """The selftest counts map as {(netns, type): events}."""
    counts = obj.map(COUNTS_MAP, SelftestKey, ctypes.c_uint64)
    return Counter({(key.netns, key.type): value for key, value in counts.items()})
