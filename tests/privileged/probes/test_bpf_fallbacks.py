# SPDX-License-Identifier: Apache-2.0
"""The function fallbacks (fentry, kprobe) of packetloss, tcpreset and tcpretrans: on a kernel
where they cannot run (as on the 6.18 development machines: fentry loads fail with EPERM, no
kprobes) the probe is unavailable with one reason per candidate; where they can, they attach."""

from __future__ import annotations

import pytest

from otel_kubeskoop.bpf.attach import AttachPlan
from otel_kubeskoop.bpf.generated import packetloss, tcpreset, tcpretrans
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.bpf.objects import object_path
from otel_kubeskoop.bpf.shared import member_plans
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Unavailable
from tests.privileged.netnsutil import require_root

require_root()

pytestmark = pytest.mark.privileged


@pytest.mark.parametrize("contract", (packetloss.OBJECT, tcpreset.OBJECT, tcpretrans.OBJECT),
                         ids=lambda c: c.name)
def test_function_fallbacks_attach_or_say_why_not(harness, contract: ObjectSpec) -> None:
    plans = tuple(
        AttachPlan(p.hook, tuple(c for c in p.candidates if c.point.kind in ("fentry", "kprobe")))
        for p in member_plans(contract)
    )
    obj = BPFObject(object_path(contract.host or contract.name), plans)
    try:
        obj.start()
    except Unavailable as exc:
        message = str(exc)
        first_hook = plans[0]
        assert f"no usable attach point for {first_hook.hook!r}" in message
        for candidate in first_hook.candidates:
            assert str(candidate.point) in message, message
        return
    finally:
        obj.close()
    assert {point.kind for point in obj.chosen.values()} <= {"fentry", "kprobe"}
