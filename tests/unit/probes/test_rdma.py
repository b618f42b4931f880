# SPDX-License-Identifier: Apache-2.0
"""rdma over the committed sysfs trees (tests/fixtures/sys/class/infiniband: mlx5_0, erdma_0) and
the RDMA netlink resource summary decoded from tests/fixtures/netlink/rdma_res_get_x86.dump."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from otel_kubeskoop.netlink.rdma import decode_res_summary
from otel_kubeskoop.probe import ProbeContext, Unavailable
from otel_kubeskoop.probes import rdma
from tests.unit.bpf.test_layouts import read_dump

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SYS = FIXTURES / "sys"
PORT = {"mlx5_0": SYS / "class/infiniband/mlx5_0/ports/1", "erdma_0": SYS / "class/infiniband/erdma_0/ports/1"}
DEV, TYPE, PORTNO = "kubeskoop.rdma.device.name", "kubeskoop.rdma.device.type", "kubeskoop.rdma.port"
BY_NAME = {s.name: s for s in rdma.INSTRUMENTS}


def summary():
    raw, _ = read_dump(FIXTURES / "netlink" / "rdma_res_get_x86.dump")
    return decode_res_summary(raw)[0]


def collect(sys_root: Path = SYS, res_summary=summary) -> tuple[dict, ProbeContext, rdma.RdmaProbe]:
    ctx = ProbeContext("rdma", sys_root=str(sys_root))
    probe = rdma.RdmaProbe(rdma.SPEC.args(), ctx, res_summary=res_summary)
    probe.start()
    out = {}
    for s in probe.collect():
        assert s.netns is None and s.pod_uid is None, "node scope"
        key = (s.instrument.name, s.attributes)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    return out, ctx, probe


def files(port: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for d in ("counters", "hw_counters") if (port / d).is_dir()
            for p in (port / d).iterdir()}


def test_resources_per_device() -> None:
    got, ctx, _ = collect()
    assert not ctx.errors
    for dev, dtype, qp, mr in (("mlx5_0", "mlx5", 66, 130), ("erdma_0", "erdma", 8, 17)):
        attrs = ((DEV, dev), (TYPE, dtype))
        assert got[("kubeskoop.rdma.qp", attrs)] == qp and got[("kubeskoop.rdma.mr", attrs)] == mr
        assert {n for n, a in got if a == attrs} == {s.name for s in rdma.RDMA_RESOURCES}


@pytest.mark.parametrize("dev, dtype, table", [("mlx5_0", "mlx5", rdma.RDMA_MLX5), ("erdma_0", "erdma", rdma.RDMA_ERDMA)])
def test_port_counters_allow_listed(dev: str, dtype: str, table) -> None:
    got, _, _ = collect()
    attrs = ((DEV, dev), (TYPE, dtype), (PORTNO, 1))
    mine = {name: v for (name, a), v in got.items() if a == attrs}
    on_disk = files(PORT[dev])
    allowed = {s.key: s.name for s in table}
    assert mine == {allowed[k]: v for k, v in on_disk.items() if k in allowed}
    # Names upstream does not export are left out (lifespan is the refresh period, not a counter).
    assert {"lifespan"} <= set(on_disk) - set(allowed)
    if dtype == "mlx5":
        assert mine["kubeskoop.rdma.mlx5.VL15_dropped"] == on_disk["VL15_dropped"]
        assert "excessive_buffer_overrun_errors" in on_disk and len(mine) == 49  # no port_xmit_packets_64 file
    else:
        assert len(mine) == 55


def test_compat_names_and_labels() -> None:
    spec = BY_NAME["kubeskoop.rdma.mlx5.VL15_dropped"]
    assert spec.compat == "kubeskoop_rdma_mlx5_VL15_dropped"
    assert dict(spec.compat_labels) == {DEV: "device", TYPE: "type", PORTNO: "port"}
    assert dict(BY_NAME["kubeskoop.rdma.qp"].compat_labels) == {DEV: "device", TYPE: "type"}


def test_unknown_driver_gets_resources_only(tmp_path) -> None:
    shutil.copytree(SYS, tmp_path / "sys")
    shutil.copytree(tmp_path / "sys/class/infiniband/mlx5_0", tmp_path / "sys/class/infiniband/rxe0")
    got, _, _ = collect(tmp_path / "sys")
    assert not [a for _, a in got if (DEV, "rxe0") in a]


def test_no_rdma_netlink_drops_resources_quietly() -> None:
    calls = []

    def unsupported():
        calls.append(1)
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    got, ctx, probe = collect(res_summary=unsupported)
    assert not [n for n, _ in got if n in {s.name for s in rdma.RDMA_RESOURCES}]
    assert ("kubeskoop.rdma.mlx5.port_rcv_data", ((DEV, "mlx5_0"), (TYPE, "mlx5"), (PORTNO, 1))) in got
    assert not ctx.errors
    probe.collect()
    assert len(calls) == 1, "not asked again"


def test_netlink_failure_is_reported() -> None:
    def fails():
        raise OSError(errno.EPERM, "Operation not permitted")

    got, ctx, _ = collect(res_summary=fails)
    assert [type(e) for e in ctx.errors] == [PermissionError] and got


@pytest.mark.parametrize("make", [lambda p: None, lambda p: (p / "class/infiniband").mkdir(parents=True)],
                         ids=["no-class", "no-device"])
def test_unavailable_without_a_device(tmp_path, make) -> None:
    make(tmp_path)
    ctx = ProbeContext("rdma", sys_root=str(tmp_path))
    with pytest.raises(Unavailable, match="RDMA device"):
        rdma.SPEC.factory(rdma.SPEC.args(), ctx).start()


def test_compat_endpoint_series() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from otel_kubeskoop.identity.keys import NODE
    from otel_kubeskoop.identity.labels import CompatLabels
    from otel_kubeskoop.telemetry.compat import CompatEndpoint

    got, _, probe = collect()
    node_only = SimpleNamespace(compat_labels=lambda _: CompatLabels(), peer=None)  # node scope: empty pod labels
    endpoint = CompatEndpoint("node-a", [], node_only, max_tuple_series=10)
    endpoint.update({NODE: probe.collect()})
    series = {}
    for family in text_string_to_metric_families(endpoint.render()[2].decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in series, f"duplicate series {key}"
            series[key] = s.value
    node = (("k8s_namespace", ""), ("k8s_node", "node-a"), ("k8s_pod", ""))
    port = tuple(sorted(node + (("device", "mlx5_0"), ("port", "1"), ("type", "mlx5"))))
    assert series[("kubeskoop_rdma_mlx5_VL15_dropped", port)] == files(PORT["mlx5_0"])["VL15_dropped"]
    assert series[("kubeskoop_rdma_qp", tuple(sorted(node + (("device", "erdma_0"), ("type", "erdma")))))] == 8
    erdma = tuple(sorted(node + (("device", "erdma_0"), ("port", "1"), ("type", "erdma"))))
    assert series[("kubeskoop_rdma_erdma_hw_rx_bytes_cnt", erdma)] == 7340032000
    rdma_series = [k for k in series if k[0].startswith("kubeskoop_rdma_")]
    assert len(rdma_series) == len(got)
