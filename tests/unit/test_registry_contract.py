# SPDX-License-Identifier: Apache-2.0
"""Every registered probe's SPEC is valid, each probe's names live in its own module, and the
derived tables agree with upstream's names."""

import csv
import importlib
import re
from pathlib import Path

import pytest

from otel_kubeskoop.probe import Kind, ProbeSpec
from otel_kubeskoop.probes import ALL_PROBES, EVENTS, INSTRUMENTS, REGISTRY
from otel_kubeskoop.vocabulary import instruments as I
from otel_kubeskoop.vocabulary.instruments import InstrumentSpec

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "otel_kubeskoop"
UPSTREAM = {row["metric_name_as_exported"]: row for row in csv.DictReader(
    (ROOT / "tests/fixtures/kubeskoop_metrics.tsv").open(), delimiter="\t")}


def test_names_are_unique():
    assert len(REGISTRY) == len(ALL_PROBES)
    assert len({i.name for i in INSTRUMENTS}) == len(INSTRUMENTS)
    assert len({e.name for e in EVENTS}) == len(EVENTS)
    compat = [s.compat for s in INSTRUMENTS if s.compat]
    assert len(compat) == len(set(compat))


def test_the_vocabulary_declares_only_the_agents_own_instruments():
    declared = {v for v in vars(I).values() if isinstance(v, InstrumentSpec)}
    assert declared == set(I.AGENT), "a probe's instruments belong in its own module"
    assert set(INSTRUMENTS) == {i for s in ALL_PROBES for i in s.instruments} | set(I.AGENT)


@pytest.mark.parametrize("spec", ALL_PROBES, ids=lambda s: s.name)
def test_spec(spec: ProbeSpec):
    module = importlib.import_module(f"otel_kubeskoop.probes.{spec.name}")
    assert module.SPEC is spec, "the probe's module stem must be its name"
    assert (ROOT / "tests/unit/probes" / f"test_{spec.name}.py").exists(), "each probe has its own test file"
    assert spec.summary and spec.overhead_note, "summary and what the cost scales with"
    assert spec.kinds and spec.kinds <= set(Kind)
    assert spec.instruments, "a metrics probe declares its instruments"
    for inst in spec.instruments:
        if inst.name.startswith("kubeskoop."):
            assert inst.probe == spec.name
    assert bool(spec.events) == (Kind.EVENTS in spec.kinds), "an events probe declares its events"
    for event in spec.events:
        assert event.probe == spec.name
    for method in ("start", "collect", "stop"):
        assert callable(getattr(spec.factory, method))


def _own_files(name: str) -> set[Path]:
    package = PACKAGE / "probes" / name
    return set(package.rglob("*.py")) if package.is_dir() else {PACKAGE / "probes" / f"{name}.py"}


@pytest.mark.parametrize("spec", ALL_PROBES, ids=lambda s: s.name)
def test_a_probes_names_appear_only_in_its_own_module(spec: ProbeSpec):
    names = [i.name for i in spec.instruments] + [i.compat for i in spec.instruments if i.compat]
    names += [e.name for e in spec.events]
    # A name followed by a word character is another name (kubeskoop.flow.overflow.flows).
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(n)}(?![\w]|\.\w)" for n in names))
    own = _own_files(spec.name)
    assert own and all(p.exists() for p in own)
    stray = {str(p.relative_to(ROOT)): sorted(set(pattern.findall(p.read_text())))
             for p in PACKAGE.rglob("*.py") if p not in own and pattern.search(p.read_text())}
    assert not stray, f"{spec.name}'s names outside its own module: {stray}"


def test_compat_names_are_upstream_names():
    for inst in INSTRUMENTS:
        if inst.compat:
            assert inst.compat in UPSTREAM, f"{inst.compat} is not an upstream KubeSkoop metric"
            assert UPSTREAM[inst.compat]["probe"] == inst.probe


def test_every_upstream_probe_is_registered_and_every_series_has_an_instrument():
    ours = {i.compat for i in INSTRUMENTS}
    for name, row in UPSTREAM.items():
        assert row["probe"] in REGISTRY, f"upstream probe {row['probe']} is not registered"
        assert name in ours, f"{name} (probe {row['probe']}) has no instrument"
