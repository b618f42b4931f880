# SPDX-License-Identifier: Apache-2.0
"""The kernel <-> user contract as committed: ``otel_kubeskoop/bpf/generated/*.py`` is exactly what
``bpf/contract/*.json`` renders to (nobody edited it by hand, nobody forgot to regenerate it after
a contract changed), every ``bpf/*.bpf.c`` has a contract, and every object's programs follow the
naming convention attach plans are read with. Needs no root, no clang and no built object:
``tests/privileged/bpf/test_object_contract.py`` checks the JSON against the built objects."""

from __future__ import annotations

import ctypes
import importlib
import json
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import attach, codegen, contract, generated
from otel_kubeskoop.bpf.spec import ContractError
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Kind, ProbeContext, Source
from otel_kubeskoop.probes import ALL_PROBES, _bpf, _latency, flow

REPO = Path(__file__).resolve().parents[3]
CONTRACTS = REPO / "bpf" / "contract"
GENERATED = REPO / "otel_kubeskoop" / "bpf" / "generated"


def committed_contracts() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(CONTRACTS.glob("*.json"))]


def spec(stem: str):
    return importlib.import_module(f"otel_kubeskoop.bpf.generated.{stem}").OBJECT


def test_generated_modules_are_what_the_contracts_render_to() -> None:
    rendered = codegen.render(committed_contracts())
    committed = {path.name: path.read_text() for path in GENERATED.glob("*.py")}
    assert sorted(committed) == sorted(rendered)
    for name, text in rendered.items():
        assert committed[name] == text, f"generated/{name} is stale or edited: run make -C bpf"


def test_contract_files_are_as_the_extractor_writes_them() -> None:
    for path in sorted(CONTRACTS.glob("*.json")):
        data = json.loads(path.read_text())
        assert contract.dumps(data) == path.read_text(), path.name
        assert data["object"] == path.stem


def test_every_bpf_source_and_every_bpf_probe_has_a_contract() -> None:
    sources = {path.name.removesuffix(".bpf.c") for path in (REPO / "bpf").glob("*.bpf.c")}
    assert {path.stem for path in CONTRACTS.glob("*.json")} == sources
    assert set(generated.OBJECTS) == sources
    members = {m for stem in sources for m in spec(stem).members}
    assert members and not members & sources
    bpf_probes = {s.name for s in ALL_PROBES if s.source is Source.BPF}
    assert bpf_probes and bpf_probes <= sources | members
    for member in members:  # a probe of a shared object: its own module, its view of the object
        view = spec(member)
        assert view.host in sources and not view.programs and view.maps


@pytest.mark.parametrize("stem", generated.OBJECTS)
def test_programs_follow_the_naming_convention(stem: str) -> None:
    programs = spec(stem).programs
    plans = attach.plans(spec(stem))
    unplanned = attach.unplanned(spec(stem))
    assert plans or unplanned
    planned = [c for plan in plans for c in plan.candidates]
    assert sorted([c.program for c in planned] + list(unplanned)) == sorted(programs)
    for candidate in planned:
        assert programs[candidate.program] == candidate.point.section


def test_plans_keep_the_object_order_of_hooks_and_candidates() -> None:
    programs = {
        "x_send_btf": "tp_btf/a",
        "x_recv_tp": "tracepoint/c/b",
        "x_send_reply_fentry": "fentry/f",
        "x_send_kprobe": "kprobe/f",
        "x_ingress": "tc",
    }
    plans = attach.plans(ObjectSpec("x", programs, {}, {}))
    assert [(p.hook, p.programs) for p in plans] == [
        ("send", ("x_send_btf", "x_send_reply_fentry", "x_send_kprobe")),
        ("recv", ("x_recv_tp",)),
    ]
    assert attach.unplanned(ObjectSpec("x", programs, {}, {})) == ("x_ingress",)


@pytest.mark.parametrize(
    ("program", "section"),
    [
        ("x_send_tp", "tp_btf/a"),  # the kind word says tracepoint, the section tp_btf
        ("y_send_btf", "tp_btf/a"),  # another object's prefix
        ("x_btf", "tp_btf/a"),  # no hook
        ("x__btf", "tp_btf/a"),
    ],
)
def test_a_program_breaking_the_convention_is_refused(program: str, section: str) -> None:
    with pytest.raises(ValueError, match=r"is not named x_<hook>\[_<detail>\]_btf"):
        attach.plans(ObjectSpec("x", {program: section}, {}, {}))


def test_shared_types_come_from_headers_outside_macros(tmp_path: Path) -> None:
    header = tmp_path / "h.h"
    header.write_text(
        "struct shared_one {\n\t__u32 a;\n};\nenum shared_kind { A = 1 };\n"
        "#define DECLARE(x) \\\n\tstruct per_object { \\\n\t\tx y; \\\n\t};\n"
    )
    assert contract.shared_type_names([header]) == {"shared_one", "shared_kind"}


def minimal(stem: str, types: list[dict], maps: list | None = None) -> dict:
    return {"object": stem, "programs": [], "maps": maps or [], "rodata": [], "types": types}


def test_a_struct_the_natural_layout_misses_is_packed_with_padding() -> None:
    gap = {"kind": "struct", "name": "gap", "shared": False, "size": 24,
           "members": [["a", "u32", 0], ["b", "u64", 8], ["c", "u8", 20]]}
    odd = {"kind": "struct", "name": "odd", "shared": False, "size": 16,
           "members": [["a", "u8", 0], ["b", "u32", 4], ["c", "u64", 8]]}
    text = codegen.render([minimal("x", [gap, odd])])["x.py"]
    assert text.count("_pack_ = 1") == 1
    assert '("_pad16", ctypes.c_uint8 * 4)' in text and '("_pad21", ctypes.c_uint8 * 3)' in text
    namespace: dict = {}
    exec(compile(text, "x.py", "exec"), namespace)
    assert namespace["Odd"]._fields_ == [
        ("a", ctypes.c_uint8), ("b", ctypes.c_uint32), ("c", ctypes.c_uint64)]
    packed = namespace["Gap"]
    assert [getattr(packed, m).offset for m in ("a", "b", "c")] == [0, 8, 20]
    assert ctypes.sizeof(packed) == 24


def test_a_shared_type_must_be_the_same_in_every_object() -> None:
    one = {"kind": "struct", "name": "s", "shared": True, "size": 4, "members": [["a", "u32", 0]]}
    other = {**one, "members": [["b", "u32", 0]]}
    with pytest.raises(ContractError, match="shared struct s differs between x and y"):
        codegen.render([minimal("x", [one]), minimal("y", [other])])


def test_map_and_array_types_render_as_ctypes() -> None:
    key = {"kind": "struct", "name": "k", "shared": False, "size": 20,
           "members": [["addr", "u8[4][2]", 0], ["name", "char[12]", 8]]}
    maps = [["m", {"type": "hash", "key": "struct k", "value": "s64", "max_entries": 8}],
            ["r", {"type": "ringbuf", "key": None, "value": None, "max_entries": 4096}]]
    text = codegen.render([minimal("x", [key], maps)])["x.py"]
    assert '("addr", ctypes.c_uint8 * 4 * 2)' in text
    assert '("name", ctypes.c_char * 12)' in text
    assert '"m": MapSpec("hash", K, ctypes.c_int64, 8)' in text
    assert '"r": MapSpec("ringbuf", None, None, 4096)' in text
    with pytest.raises(ContractError, match="not understood"):
        codegen.render([minimal("x", [{**key, "members": [["p", "void *", 0]]}])])


@pytest.mark.parametrize("probe_spec", [s for s in ALL_PROBES if s.source is Source.BPF],
                         ids=lambda s: s.name)
def test_the_maps_a_probe_reads_are_in_its_object(probe_spec) -> None:
    probe = probe_spec.factory(probe_spec.args(), ProbeContext(name=probe_spec.name))
    assert probe.bpf.spec is spec(probe_spec.name)
    maps = set(probe.bpf.spec.maps)
    if probe_spec.name == "flow":
        assert {flow.FLOWS_MAP, flow.STATS_MAP} <= maps
        assert set(flow.PROGRAMS.values()) == set(attach.unplanned(probe.bpf.spec))
        return
    if Kind.EVENTS in probe_spec.kinds:
        assert {_bpf.EVENTS_MAP, _bpf.LOSSES_MAP} <= maps
    if hasattr(probe, "counters"):
        assert {_bpf.COUNTERS_MAP, _bpf.COUNTERS_FULL_MAP} <= maps
    else:
        assert {_latency.HISTS_MAP, _latency.HISTS_FULL_MAP} <= maps
        if probe.hists.inflight_map is not None:
            assert {probe.hists.inflight_map, _latency.INFLIGHT_STATS_MAP} <= maps
