# SPDX-License-Identifier: Apache-2.0
"""Every registered probe's SPEC is valid, and the names table agrees with upstream's names."""

import csv
import importlib
from pathlib import Path

import pytest

from otel_kubeskoop.probe import Kind, ProbeSpec
from otel_kubeskoop.probes import ALL_PROBES, PLANNED, REGISTRY
from otel_kubeskoop.vocabulary import instruments as I

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = {row["metric_name_as_exported"]: row for row in csv.DictReader(
    (ROOT / "tests/fixtures/kubeskoop_metrics.tsv").open(), delimiter="\t")}


def test_names_are_unique():
    assert len(REGISTRY) == len(ALL_PROBES)
    assert len(I.BY_NAME) == len(I.ALL)
    compat = [s.compat for s in I.ALL if s.compat]
    assert len(compat) == len(set(compat))


@pytest.mark.parametrize("spec", ALL_PROBES, ids=lambda s: s.name)
def test_spec(spec: ProbeSpec):
    module = importlib.import_module(f"otel_kubeskoop.probes.{spec.name}")
    assert module.SPEC is spec, "the probe's module stem must be its name"
    assert (ROOT / "tests/unit/probes" / f"test_{spec.name}.py").exists(), "each probe has its own test file"
    assert spec.summary and spec.overhead_note, "summary and what the cost scales with"
    assert spec.kinds and spec.kinds <= set(Kind)
    assert spec.instruments, "a metrics probe declares its instruments"
    for inst in spec.instruments:
        assert I.BY_NAME[inst.name] is inst, f"{inst.name} must come from the names table"
        if inst.name.startswith("kubeskoop."):
            assert inst.probe == spec.name
    for method in ("start", "collect", "stop"):
        assert callable(getattr(spec.factory, method))


def test_compat_names_are_upstream_names():
    for inst in I.ALL:
        if inst.compat:
            assert inst.compat in UPSTREAM, f"{inst.compat} is not an upstream KubeSkoop metric"
            assert UPSTREAM[inst.compat]["probe"] == inst.probe


def test_every_upstream_series_of_an_implemented_probe_has_an_instrument():
    ours = {i.compat for i in I.ALL}
    for name, row in UPSTREAM.items():
        if row["probe"] in REGISTRY:
            assert name in ours, f"{name} (probe {row['probe']}) has no instrument"


def test_planned_names_are_upstream_probes_not_yet_registered():
    upstream_probes = {row["probe"] for row in UPSTREAM.values()}
    for names in PLANNED.values():
        assert not names & set(REGISTRY)
    assert PLANNED[Kind.METRICS] <= upstream_probes
