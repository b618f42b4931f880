# SPDX-License-Identifier: Apache-2.0
"""The capability table: CapEff parsing, and what each probe lacks under a given set."""

from __future__ import annotations

import pytest

from otel_kubeskoop import capabilities as caps
from otel_kubeskoop.probes import ALL_PROBES, REGISTRY


def test_capeff_is_read_bit_by_bit():
    # CAP_NET_ADMIN (12) and CAP_BPF (39) only
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000008000001000\nCapBnd:\t000001ffffffffff\n"
    assert caps.parse_capeff(status) == {"CAP_NET_ADMIN", "CAP_BPF"}
    with pytest.raises(ValueError, match="CapEff"):
        caps.parse_capeff("Name:\tx\n")


def test_sys_admin_stands_in_for_bpf_and_perfmon():
    (need,) = [n for n in caps.needs(REGISTRY["softirq"])]
    assert need.met_by(frozenset({"CAP_SYS_ADMIN"}))
    assert need.met_by(frozenset({"CAP_BPF", "CAP_PERFMON"}))
    assert not need.met_by(frozenset({"CAP_BPF"}))


def test_missing_names_each_probe_and_what_it_lacks():
    without_admin = frozenset({"CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"})
    lacking = caps.missing(ALL_PROBES, without_admin)
    assert {str(n) for n in lacking["qdisc"]} == {"CAP_SYS_ADMIN (setns into other network namespaces)"}
    assert "softnet" not in lacking and "fd" not in lacking
    assert set(lacking) == {s.name for s in ALL_PROBES if s.name not in ("softnet", "ipvs", "fd", "io", "rdma")}
    everything = frozenset(caps.BITS)
    assert caps.missing(ALL_PROBES, everything) == {}


def test_pod_scope_probes_need_to_read_other_users_proc():
    lacking = caps.missing([REGISTRY["io"], REGISTRY["fd"]], frozenset({"CAP_SYS_PTRACE"}))
    assert {name: [n.any_of for n in needs] for name, needs in lacking.items()} == {
        "io": [(frozenset({"CAP_DAC_READ_SEARCH"}),)], "fd": [(frozenset({"CAP_DAC_READ_SEARCH"}),)]}
