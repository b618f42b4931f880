# SPDX-License-Identifier: Apache-2.0
"""The kernel <-> user contract, checked against the compiled objects (style.md rule 6):

- every ctypes mirror in ``layouts`` has the size and every field offset of the struct in the
  object's BTF, and every enum mirror the same members and values;
- every program and map name the Python side uses exists in the object, programs in the section
  their attach point implies, and no program is left out of every plan.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import btf, layouts, selftest
from otel_kubeskoop.bpf.layouts import hist_slot
from otel_kubeskoop.bpf.loader import BPFObject
from otel_kubeskoop.bpf.objects import object_path

pytestmark = pytest.mark.privileged


def shipped_objects() -> list[Path]:
    objects = sorted(Path(object_path("selftest")).parent.glob("*.bpf.o"))
    assert objects, "no .bpf.o built: run `make -C bpf`"
    return objects


@pytest.mark.parametrize("name", sorted(layouts.STRUCTS))
def test_struct_mirror_matches_object_btf(selftest_path: str, name: str) -> None:
    mirror = layouts.STRUCTS[name]
    checked = 0
    for path in shipped_objects():
        try:
            layout = btf.object_btf(str(path)).struct_layout(name)
        except KeyError:
            continue
        fields = [f[0] for f in mirror._fields_]
        assert fields == list(layout.offsets), f"{path.name}: struct {name} members"
        assert ctypes.sizeof(mirror) == layout.size, f"{path.name}: sizeof(struct {name})"
        for field in fields:
            offset = getattr(mirror, field).offset
            assert offset == layout.offsets[field], f"{path.name}: offsetof(struct {name}, {field})"
        checked += 1
    assert checked, f"struct {name} is in no object's BTF (export it with BTF_EXPORT)"


@pytest.mark.parametrize("name", sorted(layouts.ENUMS))
def test_enum_mirror_matches_object_btf(selftest_path: str, name: str) -> None:
    mirror = layouts.ENUMS[name]
    checked = 0
    for path in shipped_objects():
        try:
            members = btf.object_btf(str(path)).enum_members(name)
        except KeyError:
            continue
        assert members == [(m.name, m.value) for m in mirror], f"{path.name}: enum {name}"
        checked += 1
    assert checked, f"enum {name} is in no object's BTF (export it with BTF_EXPORT)"


def test_selftest_names_exist_in_the_object(selftest_path: str) -> None:
    obj_btf = btf.object_btf(selftest_path)
    planned = [prog for plan in selftest.PLANS for prog in plan.programs]
    assert sorted(obj_btf.functions()) == sorted(planned), "programs in the object vs in the plans"
    maps = obj_btf.datasec(".maps")
    for name in (
        selftest.COUNTS_MAP,
        selftest.EVENTS_MAP,
        selftest.LOSSES_MAP,
        selftest.RATELIMIT_MAP,
    ):
        assert name in maps, f"map {name}"
    assert set(selftest.RODATA) <= set(obj_btf.datasec(".rodata"))

    # The same through libbpf, which also checks each program's section against its plan.
    obj = BPFObject(selftest_path, selftest.PLANS)
    try:
        obj.open()
        assert sorted(obj.program_names()) == sorted(planned)
        assert {selftest.COUNTS_MAP, selftest.EVENTS_MAP, selftest.LOSSES_MAP} <= set(
            obj.map_names()
        )
    finally:
        obj.close()


def test_a_plan_naming_the_wrong_section_is_refused(selftest_path: str) -> None:
    from otel_kubeskoop.bpf.loader import AttachPlan

    wrong = AttachPlan.of("reset", ("selftest_reset_btf", "tp_btf", "tcp_send_reset"))
    obj = BPFObject(selftest_path, [wrong])
    with pytest.raises(LookupError, match="in section 'tp_btf/tcp_receive_reset'"):
        obj.open()
    assert obj.state == "closed"
    missing = AttachPlan.of("reset", ("no_such_program", "tp_btf", "tcp_receive_reset"))
    with pytest.raises(LookupError, match="no program 'no_such_program'"):
        BPFObject(selftest_path, [missing]).open()


# --- the eBPF probes ------------------------------------------------------------------------

from otel_kubeskoop.probes import packetloss, tcpreset, tcpretrans  # noqa: E402
from otel_kubeskoop.probes._bpf import COUNTERS_FULL_MAP, COUNTERS_MAP, EVENTS_MAP, LOSSES_MAP  # noqa: E402

PROBE_MODULES = (packetloss, tcpreset, tcpretrans)


@pytest.mark.parametrize("module", PROBE_MODULES, ids=lambda m: m.OBJECT)
def test_probe_names_exist_in_the_object(module) -> None:
    path = object_path(module.OBJECT)
    obj_btf = btf.object_btf(path)
    planned = [prog for plan in module.PLANS for prog in plan.programs]
    assert sorted(obj_btf.functions()) == sorted(planned), "programs in the object vs in the plans"
    maps = obj_btf.datasec(".maps")
    for name in (COUNTERS_MAP, COUNTERS_FULL_MAP, EVENTS_MAP, LOSSES_MAP, "ratelimit"):
        assert name in maps, f"map {name}"
    assert set(module.RODATA) == set(obj_btf.datasec(".rodata")) - {
        name for name in obj_btf.datasec(".rodata") if name.startswith("__btf_export_")
    }
    # The probe's key mirror is the counters map's key.
    key = module.SPEC.factory.KEY
    layout = obj_btf.struct_layout(f"{module.OBJECT}_key")
    assert ctypes.sizeof(key) == layout.size

    # Through libbpf, which also checks each program's section against its plan.
    obj = BPFObject(path, module.PLANS)
    try:
        obj.open()
        assert sorted(obj.program_names()) == sorted(planned)
        assert {COUNTERS_MAP, COUNTERS_FULL_MAP, EVENTS_MAP, LOSSES_MAP} <= set(obj.map_names())
    finally:
        obj.close()


# --- the latency probes -----------------------------------------------------------------------

from otel_kubeskoop.probes import _latency, biolatency, netiftxlat, softirq, virtcmdlatency  # noqa: E402
from otel_kubeskoop.probes import kernellatency, socketlatency  # noqa: E402

LATENCY_MODULES = (netiftxlat, softirq, biolatency, virtcmdlatency, socketlatency, kernellatency)


@pytest.mark.parametrize("module", LATENCY_MODULES, ids=lambda m: m.OBJECT)
def test_latency_probe_names_exist_in_the_object(module) -> None:
    path = object_path(module.OBJECT)
    obj_btf = btf.object_btf(path)
    planned = [prog for plan in module.PLANS for prog in plan.programs]
    assert sorted(obj_btf.functions()) == sorted(planned), "programs in the object vs in the plans"
    probe = module.SPEC.factory
    maps = obj_btf.datasec(".maps")
    wanted = {_latency.HISTS_MAP, _latency.HISTS_FULL_MAP, _latency.EVENTS_MAP,
              _latency.LOSSES_MAP, _latency.INFLIGHT_STATS_MAP, "ratelimit"}
    if probe.INFLIGHT_MAP:
        wanted.add(probe.INFLIGHT_MAP)
    assert wanted <= set(maps)
    rodata = {n for n in obj_btf.datasec(".rodata") if not n.startswith("__btf_export_")}
    assert set(module.RODATA) == rodata
    # The hists map's key and value are the probe's mirrors, and so is the slot holding them.
    for mirror, name in ((probe.KEY, f"{module.OBJECT}_key"),
                         (probe.VALUE, layouts_name(probe.VALUE)),
                         (hist_slot(probe.KEY, probe.VALUE), "hists_slot")):
        assert ctypes.sizeof(mirror) == obj_btf.struct_layout(name).size, name
    assert hist_slot(probe.KEY, probe.VALUE).value.offset == obj_btf.struct_layout("hists_slot").offsets["value"]

    obj = BPFObject(path, module.PLANS)
    try:
        obj.open()
        assert sorted(obj.program_names()) == sorted(planned)
        assert wanted <= set(obj.map_names())
    finally:
        obj.close()


def layouts_name(mirror: type) -> str:
    """The C struct a mirror stands for (``layouts.STRUCTS`` inverted)."""
    return next(name for name, cls in layouts.STRUCTS.items() if cls is mirror)


# --- flow (TC programs, no attach plans) -----------------------------------------------------

from otel_kubeskoop.probes import flow  # noqa: E402


def test_flow_names_exist_in_the_object() -> None:
    path = object_path(flow.OBJECT)
    obj_btf = btf.object_btf(path)
    # BTF lists the programs and the kfunc they call (an extern function).
    assert sorted(obj_btf.functions()) == sorted([*flow.PROGRAMS.values(), "bpf_cast_to_kern_ctx"])
    assert {flow.FLOWS_MAP, flow.STATS_MAP} <= set(obj_btf.datasec(".maps"))
    rodata = {n for n in obj_btf.datasec(".rodata") if not n.startswith("__btf_export_")}
    assert set(flow.RODATA) == rodata
    for mirror, name in ((layouts.FlowKey, "flow_key"), (layouts.FlowValue, "flow_value")):
        assert ctypes.sizeof(mirror) == obj_btf.struct_layout(name).size, name
    assert flow._KEY.size == ctypes.sizeof(layouts.FlowKey)
    assert flow._VALUE.size == ctypes.sizeof(layouts.FlowValue)

    obj = BPFObject(path, (), load_only=tuple(flow.PROGRAMS.values()))
    try:
        obj.open()
        assert sorted(obj.program_names()) == sorted(flow.PROGRAMS.values())
        assert {flow.FLOWS_MAP, flow.STATS_MAP} <= set(obj.map_names())
    finally:
        obj.close()
    with pytest.raises(LookupError, match="no program 'flow_nothing'"):
        BPFObject(path, (), load_only=("flow_nothing",)).open()
