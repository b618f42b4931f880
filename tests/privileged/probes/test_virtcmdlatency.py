# SPDX-License-Identifier: Apache-2.0
"""virtcmdlatency on the real kernel: it attaches with fentry/fexit or kprobes where the kernel
allows them, and otherwise is unavailable with a reason naming each candidate (the development
machines: no CONFIG_KPROBES, fentry refused with EPERM)."""

from __future__ import annotations

import pytest

from otel_kubeskoop.bpf.attach import plans
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.bpf.generated import virtcmdlatency as contract
from otel_kubeskoop.probe import Unavailable
from otel_kubeskoop.probes import virtcmdlatency
from tests.privileged.netnsutil import require_root
from tests.privileged.probes.conftest import Harness

PLANS = plans(contract.OBJECT)

require_root()

pytestmark = pytest.mark.privileged


def test_attaches_or_says_which_hooks_this_kernel_lacks(harness: Harness) -> None:
    features = KernelFeatures()
    try:
        probe = harness.start(virtcmdlatency.SPEC)
    except Unavailable as exc:
        message = str(exc)
        assert "no usable attach point for 'entry'" in message
        assert "fentry/virtnet_send_command" in message and "kprobe/virtnet_send_command" in message
        kprobe = features.unavailable(PLANS[0].candidates[2].point)
        assert kprobe is not None and kprobe in message  # kprobes missing, or no such symbol
        return
    kinds = {hook: point.kind.value for hook, point in probe.bpf.chosen.items()}
    assert kinds in ({"entry": "fentry", "exit": "fexit"}, {"entry": "kprobe", "exit": "kretprobe"},
                     {"entry": "fentry", "exit": "kretprobe"}, {"entry": "kprobe", "exit": "fexit"})
    assert probe.collect()  # self-telemetry at least
