# SPDX-License-Identifier: Apache-2.0
"""rdma on this kernel. The development machines have no RDMA device (and no CONFIG_INFINIBAND):
the probe must say so, and the RDMA netlink family must be absent or list no device. On a machine
with RDMA devices, every counter the probe reports equals its sysfs file (read after it: counters
only grow) and the resource counts come from a real RES_GET dump.

The decoders and the mlx5/erdma counter mapping are tested against committed fixtures in
tests/unit (procfs/test_sys_infiniband.py, netlink/test_rdma.py, probes/test_rdma.py).
"""

from __future__ import annotations

import errno
import os

import pytest

from otel_kubeskoop.netlink.rdma import dump_res_summary
from otel_kubeskoop.probe import ProbeContext, Unavailable
from otel_kubeskoop.probes import rdma
from tests.privileged.netnsutil import require_root

require_root()
pytestmark = pytest.mark.privileged

CLASS = "/sys/class/infiniband"


def devices() -> list[str]:
    return sorted(os.listdir(CLASS)) if os.path.isdir(CLASS) else []


def test_rdma_on_this_machine():
    ctx = ProbeContext("rdma")
    probe = rdma.SPEC.factory(rdma.SPEC.args(), ctx)
    try:
        summaries = dump_res_summary()
    except OSError as exc:
        assert exc.errno == errno.EPROTONOSUPPORT, exc  # no RDMA core in this kernel
        summaries = []
    assert sorted(s.name for s in summaries) == devices()
    if not devices():
        with pytest.raises(Unavailable, match=CLASS):
            probe.start()
        return
    probe.start()
    samples = probe.collect()
    assert not ctx.errors
    for s in samples:
        attrs = dict(s.attributes)
        if rdma.RDMA_PORT in attrs:
            port = f"{CLASS}/{attrs[rdma.RDMA_DEVICE_NAME]}/ports/{attrs[rdma.RDMA_PORT]}"
            path = next(p for p in (f"{port}/counters/{s.instrument.key}", f"{port}/hw_counters/{s.instrument.key}")
                        if os.path.exists(p))
            assert s.value <= int(open(path).read())
    assert {dict(s.attributes)[rdma.RDMA_DEVICE_NAME] for s in samples} == set(devices())
