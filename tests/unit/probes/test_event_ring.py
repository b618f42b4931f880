# SPDX-License-Identifier: Apache-2.0
"""The ring buffer size a probe with a BPF object of its own takes (``ringBufferKiB``)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from otel_kubeskoop.probes._bpf import DEFAULT_RING_KIB, EVENTS_MAP, RingEventArgs, event_ring

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_default_is_the_compiled_size() -> None:
    text = open("bpf/include/events.bpf.h").read()
    assert f"#define EVENTS_RINGBUF_BYTES ({DEFAULT_RING_KIB} * 1024)" in text
    assert RingEventArgs().ring_buffer_kib == DEFAULT_RING_KIB


def test_ring_size_while_events_flow_and_without() -> None:
    args = RingEventArgs.model_validate({"ringBufferKiB": 1024, "eventRate": 0})
    assert event_ring(SimpleNamespace(events_enabled=True), args) == {EVENTS_MAP: 1 << 20}
    assert event_ring(SimpleNamespace(events_enabled=False), args) == {EVENTS_MAP: PAGE}
    small = RingEventArgs.model_validate({"ringBufferKiB": 4})
    assert event_ring(SimpleNamespace(events_enabled=True), small) == {EVENTS_MAP: max(PAGE, 4096)}


@pytest.mark.parametrize("kib", [0, 3, 1000, 1 << 17])
def test_sizes_the_kernel_would_refuse_are_refused_naming_the_setting(kib: int) -> None:
    with pytest.raises(ValidationError, match="ringBufferKiB|ring_buffer_kib|greater|less"):
        RingEventArgs.model_validate({"ringBufferKiB": kib})
