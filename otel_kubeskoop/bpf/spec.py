# SPDX-License-Identifier: Apache-2.0
"""What a compiled BPF object declares, as its generated module states it: programs and their
sections, maps with their key and value mirrors, ``const volatile`` settings.

Each ``otel_kubeskoop/bpf/generated/<stem>.py`` holds one :class:`ObjectSpec` (``OBJECT``),
written by :mod:`otel_kubeskoop.bpf.contract` from the object's BTF; attach plans are derived from
its programs (:func:`otel_kubeskoop.bpf.attach.plans`). This module imports nothing else of ours,
so that generated modules stay plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContractError", "MapSpec", "ObjectSpec"]


class ContractError(ValueError):
    """An object whose contract cannot be stated (a pointer or bitfield crossing to user space,
    an anonymous struct as a map's key...)."""


@dataclass(frozen=True, slots=True)
class MapSpec:
    """One map: libbpf's name of its type (``hash``, ``percpu_array``, ``ringbuf``...), the ctypes
    mirrors of its key and value (None where the map has no BTF for them: a ring buffer), and its
    size as compiled (user space may change it before load)."""

    type: str
    key: Any
    value: Any
    max_entries: int


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """A BPF object, ``bpf/<name>.bpf.c`` built into ``<name>.bpf.o``."""

    name: str
    #: program -> ELF section (``SEC()``), in the object's order
    programs: Mapping[str, str]
    maps: Mapping[str, MapSpec]
    #: ``const volatile`` setting in ``.rodata`` -> its ctypes type
    rodata: Mapping[str, Any]
    #: ``.data``/``.bss`` variable (a setting written while the object runs) -> its ctypes type
    globals: Mapping[str, Any] = field(default_factory=dict)
    #: a shared object's probes (``bpf/datapath.bpf.c``); empty for an object of one probe
    members: tuple[str, ...] = ()
    #: for a probe of a shared object: that object's name. Its maps and settings are the
    #: object's named ``<probe>_<name>``, here without the prefix, and it has no programs of its
    #: own (``otel_kubeskoop/bpf/shared.py``)
    host: str | None = None
