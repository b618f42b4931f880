# SPDX-License-Identifier: Apache-2.0
"""KubeSkoop's label side of identity: ``metrics.additionalLabels`` rendered for a pod, and the
entity labels of the compat ``/metrics`` endpoint."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from otel_kubeskoop.topology.podinfo import PodInfo

# Upstream: `\${labels:(.*?)}`, a lazy match up to the first `}`.
_LABEL_EXPR = re.compile(r"\$\{labels:(.*?)\}")


@dataclass(frozen=True, slots=True)
class CompatLabels:
    """Upstream's entity labels for one resource: empty namespace and pod for the node."""

    namespace: str = ""
    pod: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # additionalLabels, rendered for this pod


def render_additional_labels(templates: Sequence[tuple[str, str]], pod: PodInfo | None) -> dict[str, str]:
    """Render KubeSkoop ``metrics.additionalLabels`` for one pod: ``{label name: value}``.

    Each template is ``(name, value_expr)``, the config's ``name=valueExpr`` already split (config
    keeps everything after the first ``=``; upstream ``InitAdditionalLabels`` splits on every ``=``
    and keeps only the second field, so ``n=a=b`` is ``a`` upstream and ``a=b`` here). Names and
    expressions are stripped of surrounding whitespace as upstream does. Every
    ``${labels:<podLabelKey>}`` in the expression becomes that pod label's value, or ``""`` when the
    pod has no such label; the text around it is kept (``prefix_${labels:l1}_suffix``). With no pod
    (the host namespace, whose upstream entity has no labels) every placeholder renders ``""``.

    Matches alibaba/kubeskoop ``pkg/exporter/probe/legacy.go`` ``BuildAdditionalLabelsValues`` and
    its table test ``TestBuildAdditionalLabelsValues1`` in ``legacy_test.go`` (commit 765e0c4).
    """
    labels = pod.labels if pod is not None else {}
    out: dict[str, str] = {}
    for name, expr in templates:
        out[name.strip()] = _LABEL_EXPR.sub(lambda m: labels.get(m.group(1), ""), expr.strip())
    return out
