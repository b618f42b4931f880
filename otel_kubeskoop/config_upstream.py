# SPDX-License-Identifier: Apache-2.0
"""What upstream KubeSkoop's config loader accepts that a strict schema would not.

Upstream decodes its file with ``gopkg.in/yaml.v3`` into tagged structs
(``pkg/exporter/cmd/config.go`` in alibaba/kubeskoop) and probe arguments with
``mapstructure.Decode``: both ignore keys they do not know and read ``null`` as "not set". Its own
Helm chart relies on that: the ConfigMap template writes ``debugmode:`` in lower case, and with
default values renders ``additionalLabels: null``. So for upstream's keys we do the same, but
name every ignored key in one warning. Our own keys stay strict: an unknown key that is close to
one of ours is an error, not a silently ignored typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel

# Probe arguments upstream's probes read (their mapstructure tags; matched case-insensitively).
# Any other argument of ours is our own key, so a near miss of one is an error.
UPSTREAM_ARGS: dict[str, tuple[str, ...]] = {
    "flow": ("interfaceName", "enablePortInLabel"),
    "packetloss": ("enableStack",),
    "softirq": ("softirq-types",),
}

# Probe names upstream's docs still show but upstream itself no longer has.
REMOVED_PROBES: dict[str, str] = {
    "info": "removed from KubeSkoop in commit fc83d12; its kubeskoop_info_* series are not served",
}

# Keys of upstream's layout before September 2023, which current upstream also ignores.
_HINTS: dict[str, str] = {
    "metric_config": "upstream's layout before its commit 35411a6; probes now go in metrics.probes",
    "event_config": "upstream's layout before its commit 35411a6; probes and sinks now go in event.probes and event.sinks",
}


def near(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``key`` is most probably a misspelling of (case differences included)."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(str(key).lower(), list(by_lower), n=1, cutoff=0.8)
    return by_lower[match[0]] if match else None


def ignored_note(path: str, key: str, upstream: Iterable[str]) -> str:
    """How the warning names an ignored key: its path, and what it probably meant."""
    hint = _HINTS.get(key)
    if hint is None:
        meant = near(key, upstream)
        if meant is not None:
            hint = f"did you mean {meant!r}? keys are case-sensitive, as upstream's are" if meant.lower() == key.lower() \
                else f"did you mean {meant!r}?"
    return f"{path} ({hint})" if hint else path


def _models(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally, or as list items), and whether it is a list."""
    stack = [annotation]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann, False
        args = get_args(ann)
        if getattr(ann, "__origin__", None) is list and args and isinstance(args[0], type) \
                and issubclass(args[0], BaseModel):
            return args[0], True
        stack.extend(args)
    return None, False


def tolerate(data: Mapping[Any, Any], model: type[BaseModel], path: str, ignored: list[str]) -> dict[Any, Any]:
    """``data`` with upstream's tolerance applied for ``model``: ``null`` values dropped (the default
    applies), and unknown keys of upstream's sections dropped and noted in ``ignored``. A model's
    ``upstream_keys`` class variable lists the keys upstream's struct has; None means the whole
    section is ours and stays strict. Unknown keys close to one of our keys are kept, so that
    validation reports them."""
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    upstream_keys: frozenset[str] | None = getattr(model, "upstream_keys", None)
    own = [k for k in fields if upstream_keys is None or k not in upstream_keys]
    out: dict[Any, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        info = fields.get(key)
        if info is None:
            if upstream_keys is not None and near(key, own) is None:
                ignored.append(ignored_note(where, str(key), upstream_keys))
            else:
                out[key] = value
            continue
        if value is None:
            continue
        sub, is_list = _models(info.annotation)
        if sub is not None and is_list and isinstance(value, list):
            value = [tolerate(item, sub, f"{where}[{i}]", ignored) if isinstance(item, Mapping) else item
                     for i, item in enumerate(value)]
        elif sub is not None and isinstance(value, Mapping):
            value = tolerate(value, sub, where, ignored)
        out[key] = value
    return out
