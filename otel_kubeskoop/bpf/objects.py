# SPDX-License-Identifier: Apache-2.0
"""Where the compiled BPF objects are: package data in ``otel_kubeskoop/bpf/objects/``.

``make -C bpf`` compiles ``bpf/<stem>.bpf.c`` and copies ``<stem>.bpf.o`` there; a wheel ships
them as package data. They are never committed (the mirrors generated from them are).
"""

from __future__ import annotations

import importlib.resources
import os

from otel_kubeskoop.probe import Unavailable

__all__ = ["ObjectNotBuilt", "object_path"]


class ObjectNotBuilt(Unavailable):
    """The ``.bpf.o`` a probe needs is not in the package (installed without ``make -C bpf``)."""


def object_path(stem: str) -> str:
    """The filesystem path of ``<stem>.bpf.o`` (libbpf opens it by path)."""
    resource = importlib.resources.files("otel_kubeskoop.bpf") / "objects" / f"{stem}.bpf.o"
    if not isinstance(resource, os.PathLike):
        raise ObjectNotBuilt(
            f"BPF object {stem}.bpf.o is inside an archive; install the package unzipped"
        )
    path = os.fspath(resource)
    if not os.path.isfile(path):
        raise ObjectNotBuilt(
            f"BPF object {stem}.bpf.o is not built (looked for {path}): run `make -C bpf`"
        )
    return path
