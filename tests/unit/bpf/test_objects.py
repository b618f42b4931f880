# SPDX-License-Identifier: Apache-2.0
"""Locating packaged BPF objects."""

from __future__ import annotations

import pytest

from otel_kubeskoop.bpf.objects import ObjectNotBuilt, object_path
from otel_kubeskoop.probe import Unavailable


def test_a_missing_object_says_how_to_build_it() -> None:
    with pytest.raises(ObjectNotBuilt, match=r"no_such_probe\.bpf\.o is not built .*make -C bpf"):
        object_path("no_such_probe")
    assert issubclass(ObjectNotBuilt, Unavailable)  # the probe is unavailable, the agent runs on
