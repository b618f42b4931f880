# SPDX-License-Identifier: Apache-2.0
"""The kernel <-> user contract, checked against the compiled objects, for every object the
registry's eBPF probes load (``ALL_PROBES`` with source BPF, so that a new probe cannot escape
these checks) and the selftest object:

- the committed contract (``bpf/contract/<stem>.json``, which the generated mirrors are rendered
  from and ``tests/unit/bpf/test_generated.py`` checks them against) is what the built object's
  BTF, programs, sections, maps and ``.rodata`` say;
- libbpf opens each object with the attach plans derived from it (every program exists, in the
  section its attach point implies), and every map the spec names is there.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import contract
from otel_kubeskoop.bpf.attach import AttachPlan
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.bpf.objects import object_path
from otel_kubeskoop.probe import Source
from otel_kubeskoop.probes import ALL_PROBES

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[3]


def spec_of(stem: str):
    return importlib.import_module(f"otel_kubeskoop.bpf.generated.{stem}").OBJECT


#: the objects of the registry's eBPF probes (a probe of a shared object: that object), and
#: selftest (``doctor``'s check of the machinery)
OBJECTS = sorted({spec_of(spec.name).host or spec.name for spec in ALL_PROBES
                  if spec.source is Source.BPF} | {"selftest"})


def test_every_bpf_probe_is_checked() -> None:
    bpf_probes = [s.name for s in ALL_PROBES if s.source is Source.BPF]
    assert len(bpf_probes) >= 10
    assert {spec_of(p).host or p for p in bpf_probes} < set(OBJECTS)


@pytest.mark.parametrize("stem", OBJECTS)
def test_committed_contract_is_what_the_object_states(stem: str) -> None:
    headers = sorted(p for p in (REPO / "bpf" / "include").glob("*.h") if p.name != "vmlinux.h")
    stated = contract.extract(object_path(stem), contract.shared_type_names(headers))
    committed = json.loads((REPO / "bpf" / "contract" / f"{stem}.json").read_text())
    assert stated == committed, f"bpf/contract/{stem}.json is stale: run make -C bpf"


@pytest.mark.parametrize("stem", OBJECTS)
def test_object_opens_with_its_derived_plans(stem: str) -> None:
    spec = spec_of(stem)
    obj = BPFObject.of(spec)
    try:
        obj.open()  # checks every planned program's section against its plan
        assert obj.program_names() == list(spec.programs)
        assert set(spec.maps) <= set(obj.map_names())
        planned = {p for plan in obj.plans for p in plan.programs}
        assert planned | set(obj.load_only) == set(spec.programs)
        for member in spec.members:  # a shared object: each probe's view names its maps
            view = spec_of(member)
            assert view.host == stem
            assert {f"{member}_{m}" for m in view.maps} <= set(obj.map_names())
    finally:
        obj.close()


def test_a_plan_naming_the_wrong_section_is_refused(selftest_path: str) -> None:
    wrong = AttachPlan.of("reset", ("selftest_reset_btf", "tp_btf", "tcp_send_reset"))
    obj = BPFObject(selftest_path, [wrong])
    with pytest.raises(LookupError, match="in section 'tp_btf/tcp_receive_reset'"):
        obj.open()
    assert obj.state == "closed"
    missing = AttachPlan.of("reset", ("no_such_program", "tp_btf", "tcp_receive_reset"))
    with pytest.raises(LookupError, match="no program 'no_such_program'"):
        BPFObject(selftest_path, [missing]).open()
    with pytest.raises(LookupError, match="no program 'flow_nothing'"):
        BPFObject(object_path("flow"), (), load_only=("flow_nothing",)).open()
