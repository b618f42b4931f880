# SPDX-License-Identifier: Apache-2.0
"""Metric names in PromQL expressions, and the names the OTLP-to-Prometheus translation yields."""

from __future__ import annotations

import re

from otel_kubeskoop.docs import prom_name
from otel_kubeskoop.probes import INSTRUMENTS
from otel_kubeskoop.vocabulary import instruments as I

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan"}
_STRIP = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges and subqueries
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),  # label lists
    re.compile(r"\$\{?\w+\}?"),  # Grafana variables
]
_LABEL_VALUES = re.compile(r"label_values\((.*),\s*\w+\)", re.DOTALL)
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords, labels and variables left out);
    ``expr`` may be a Grafana variable query, ``label_values(<selector>, <label>)``."""
    variable = _LABEL_VALUES.fullmatch(expr.strip())
    if variable:
        expr = variable.group(1)
    for pattern in _STRIP:
        expr = pattern.sub(" ", expr)
    return {m for m in _NAME.findall(expr) if m.lower() not in _KEYWORDS}


def otlp_names() -> set[str]:
    """Every series name Prometheus stores for the agent's OTLP metrics."""
    names = {"target_info"}
    for spec in INSTRUMENTS:
        base = prom_name(spec)
        if spec.kind is I.InstrumentKind.HISTOGRAM:
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    return names
