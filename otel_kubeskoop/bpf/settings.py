# SPDX-License-Identifier: Apache-2.0
"""A BPF object's settings: its global variables, found by name in the object's BTF.

- ``const volatile`` ones are in ``.rodata``, written into the section's initial value between
  open and load (the verifier then sees them as constants): :func:`patch`;
- plain ones are in ``.data`` (initialised) or ``.bss`` (zero), maps of one entry that user space
  may rewrite while the programs run, as a shared object's probes start and stop
  (``bpf/datapath.bpf.c``): :func:`patch_sections`.

An int or bool is encoded with the variable's own size and signedness (from BTF); bytes must have
exactly its size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from otel_kubeskoop.bpf import btf as btf_mod

__all__ = ["Setting", "encode", "patch", "patch_sections"]

Setting = bytes | int | bool

#: the sections of the variables a loaded object's programs read and user space writes
WRITABLE = (".data", ".bss")


def encode(obj_btf: btf_mod.BTF, obj: str, name: str, value: Setting, size: int) -> bytes:
    """The bytes of variable ``name`` (``size`` bytes) holding ``value``."""
    if isinstance(value, bytes):
        data = value
    else:
        int_size, signed = obj_btf.int_encoding(obj_btf.var_type(name))
        data = int(value).to_bytes(int_size, "little", signed=signed)
    if len(data) != size:
        raise ValueError(f"{obj}: {name!r} takes {size} bytes, got {len(data)}")
    return data


def patch(obj_btf: btf_mod.BTF, obj: str, section: str, data: bytearray | memoryview,
          values: Mapping[str, Setting]) -> None:
    """Write ``values`` into ``data``, the contents of ``section`` (LookupError for a variable
    it does not hold)."""
    layout = obj_btf.datasec(section)
    for name, value in values.items():
        if name not in layout:
            what = "const volatile" if section == ".rodata" else "variable"
            raise LookupError(f"{obj}: no {what} {name!r} in {section}")
        offset, size = layout[name]
        if offset + size > len(data):
            raise LookupError(f"{obj}: {name!r} lies outside {section}")
        data[offset : offset + size] = encode(obj_btf, obj, name, value, size)


def patch_sections(obj_btf: btf_mod.BTF, obj: str, values: Mapping[str, Setting],
                   section_map: Callable[[str], Any]) -> None:
    """Write ``values`` into the ``.data``/``.bss`` maps of a loaded object (``section_map(name)``
    gives a section's map, key 0 its whole contents). Its programs only read them, so a section
    is read, changed and written back whole."""
    todo = dict(values)
    for section in WRITABLE:
        try:
            layout = obj_btf.datasec(section)
        except KeyError:
            continue
        mine = {name: value for name, value in todo.items() if name in layout}
        if not mine:
            continue
        data_map = section_map(section)
        data = bytearray(data_map.lookup(0))
        patch(obj_btf, obj, section, data, mine)
        data_map.update(0, bytes(data))
        for name in mine:
            del todo[name]
    if todo:
        raise LookupError(f"{obj}: no variable {sorted(todo)} in {' or '.join(WRITABLE)}")
