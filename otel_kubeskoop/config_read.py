# SPDX-License-Identifier: Apache-2.0
"""Reading a config file into a YAML document, refusing what YAML itself lets through: a binary
file, an empty one (it would run no probe and say nothing), and a key given twice in one mapping
(YAML loaders keep the last one silently)."""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a config is a few KiB; anything this large is not one
Problem = tuple[str, str]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that records a mapping key given twice instead of keeping the last."""

    duplicates: list[Problem]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                self.duplicates.append((f"line {line}", f"key {key!r} given twice (first at line {first})"))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_document(data: bytes) -> tuple[Any, list[Problem]]:
    """The YAML document in ``data``, or the problems that make it unusable."""
    nul = data.find(b"\0")
    if nul >= 0:
        return None, [("", f"not a text file (a NUL byte at offset {nul})")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [("", f"not a UTF-8 text file (byte {exc.start})")]
    if not text.strip():
        return None, [("", "the file is empty: no probe would run; list probes under metrics.probes or event.probes")]
    loader = _UniqueKeyLoader(text)
    loader.duplicates = []
    try:
        document = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return None, [(where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")]
    finally:
        loader.dispose()
    if loader.duplicates:
        return None, loader.duplicates
    if document is None:
        return None, [("", "the file has no settings (comments only): no probe would run")]
    return document, []


def read_file(path: str) -> tuple[bytes | None, list[Problem]]:
    """The bytes of ``path`` (at most ``MAX_BYTES``), or the problems that stopped the read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [("", f"cannot read: {exc.strerror or exc}")]
    if len(data) > MAX_BYTES:
        return None, [("", f"over {MAX_BYTES} bytes: not a config file")]
    return data, []
