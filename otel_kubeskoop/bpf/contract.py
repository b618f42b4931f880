# SPDX-License-Identifier: Apache-2.0
"""The kernel <-> user contract of a compiled BPF object, read from the object itself, as
cilium/ebpf's bpf2go does, and written as Python by ``make -C bpf``:

    python -m otel_kubeskoop.bpf.contract extract STEM.bpf.o HEADER.h... > bpf/contract/STEM.json
    python -m otel_kubeskoop.bpf.contract render bpf/contract/*.json --out DIRECTORY

``extract`` opens the object with libbpf (no kernel needed) and writes what user space relies on
as JSON: its programs and their sections, in the object's order; its maps, with their type, key,
value and size; its ``.rodata`` settings; and every struct and enum those name, plus the ones
``BTF_EXPORT()`` names (ring-buffer records, event types), with sizes, member offsets and enum
values. A shared object (``bpf/datapath.bpf.c``) also has ``globals``, its ``.data`` and ``.bss``
variables (settings written while it runs), and ``members``, its probes, named by the enum
``<object>_probe`` (``DATAPATH_PACKETLOSS`` is ``packetloss``). A type defined in one of the given shared headers (``bpf/include/*.h``) is marked shared.
``render`` (:mod:`.codegen`) turns the JSON files into one module per object and one for the
shared types. Both outputs are committed: the unit tests check that the modules are what the JSON
renders to, the privileged tests that the JSON is what the built objects say.

A type expression is a string: ``u8``..``u64``, ``s8``..``s64``, ``bool``, ``char``,
``struct NAME``, ``union NAME``, and ``T[n]`` for an array of ``n`` of ``T`` (applied left to
right: ``u8[4][2]`` is two arrays of four bytes). An enum-typed member is its integer.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.btf import BTF, Kind
from otel_kubeskoop.bpf.spec import ContractError

__all__ = ["ContractError", "dumps", "extract", "main", "shared_type_names"]

#: ``BTF_EXPORT()``'s variables (``bpf/include/events.bpf.h``): types only user space reads
EXPORT_PREFIX = "__btf_export_"
_DEFINITION = re.compile(r"^(struct|union|enum)\s+(\w+)\s*\{", re.M)


def shared_type_names(headers: Iterable[str | os.PathLike[str]]) -> set[str]:
    """Names of the structs, unions and enums defined in ``headers`` outside macros."""
    names = set()
    for header in headers:
        lines = Path(header).read_text().splitlines()
        # A line continued with a backslash is a macro's: its struct is the including object's.
        text = "\n".join(line for line in lines if not line.rstrip().endswith("\\"))
        names.update(match.group(2) for match in _DEFINITION.finditer(text))
    return names


class _Extractor:
    """Type expressions and definitions of one object's BTF, collected from its roots."""

    def __init__(self, btf: BTF, shared: set[str]) -> None:
        self.btf = btf
        self.shared = shared
        self.types: dict[str, dict[str, Any]] = {}

    def expr(self, type_id: int, where: str) -> str:
        btf = self.btf
        type_id = btf.resolve(type_id)
        kind = btf.kind(type_id)
        if kind == Kind.INT:
            size, signed = btf.int_encoding(type_id)
            flavour = btf.int_flavour(type_id)
            if flavour == "bool" or (flavour == "char" and size == 1):
                return flavour
            return f"{'s' if signed else 'u'}{size * 8}"
        if kind in (Kind.ENUM, Kind.ENUM64):
            size, signed = btf.int_encoding(type_id)
            if btf.name(type_id):
                self.define(type_id, where)
            return f"{'s' if signed else 'u'}{size * 8}"
        if kind == Kind.ARRAY:
            element, count = btf.array(type_id)
            return f"{self.expr(element, where)}[{count}]"
        if kind in (Kind.STRUCT, Kind.UNION):
            name = btf.name(type_id)
            if not name:
                raise ContractError(f"{where}: an anonymous struct or union; name it")
            self.define(type_id, where)
            return f"{'struct' if kind == Kind.STRUCT else 'union'} {name}"
        raise ContractError(f"{where}: a type of BTF kind {kind} cannot cross to user space")

    def define(self, type_id: int, where: str) -> None:
        btf = self.btf
        name = btf.name(type_id)
        if name in self.types:
            return
        kind = btf.kind(type_id)
        if kind in (Kind.ENUM, Kind.ENUM64):
            size, signed = btf.int_encoding(type_id)
            definition: dict[str, Any] = {
                "kind": "enum", "name": name, "shared": name in self.shared, "size": size,
                "signed": signed, "members": [list(item) for item in btf.enum_items(type_id)],
            }
        else:
            definition = {
                "kind": "struct" if kind == Kind.STRUCT else "union", "name": name,
                "shared": name in self.shared, "size": btf.size(type_id), "members": [],
            }
        self.types[name] = definition  # before the members: a struct may point at itself
        if definition["kind"] == "enum":
            return
        for member in btf.members(type_id):
            inside = f"{where}: {definition['kind']} {name}.{member.name or '<anonymous>'}"
            if member.bitfield_size or member.bit_offset % 8:
                raise ContractError(f"{inside} is a bitfield")
            if not member.name:
                raise ContractError(f"{inside} is an anonymous member")
            definition["members"].append(
                [member.name, self.expr(member.type_id, inside), member.bit_offset // 8]
            )


def _each(next_fn: Any, name_fn: Any, obj: int) -> list[tuple[int, str]]:
    """(pointer, name) of each program or map of an open object, in libbpf's order."""
    out, item = [], None
    while item := next_fn(obj, item):
        out.append((item, name_fn(item).decode()))
    return out


def extract(path: str | os.PathLike[str], shared: set[str]) -> dict[str, Any]:
    """The contract of the object at ``path`` (see the module docstring)."""
    so = libbpf.lib()
    stem = os.path.basename(path).removesuffix(".bpf.o")
    with libbpf.captured_log() as lines:
        obj = so.bpf_object__open_file(os.fspath(path).encode(), None)
    if not obj:
        err = ctypes.get_errno() or errno.EINVAL
        raise ContractError(f"{path}: libbpf cannot open it ({libbpf.strerror(err)}): "
                            + "; ".join(lines))
    try:
        btf = BTF(libbpf.check_ptr(so.bpf_object__btf(obj), f"{path}: BTF"), str(path), owner=obj)
        ex = _Extractor(btf, shared)
        programs = [[name, so.bpf_program__section_name(prog).decode()]
                    for prog, name in _each(so.bpf_object__next_program, so.bpf_program__name, obj)]
        maps = []
        for ptr, name in _each(so.bpf_object__next_map, so.bpf_map__name, obj):
            if so.bpf_map__is_internal(ptr):
                continue
            key, value = so.bpf_map__btf_key_type_id(ptr), so.bpf_map__btf_value_type_id(ptr)
            maps.append([name, {
                "type": so.libbpf_bpf_map_type_str(so.bpf_map__type(ptr)).decode(),
                "key": ex.expr(key, f"{stem}: map {name} key") if key else None,
                "value": ex.expr(value, f"{stem}: map {name} value") if value else None,
                "max_entries": so.bpf_map__max_entries(ptr),
            }])
        rodata = []
        section = btf.find(".rodata", Kind.DATASEC)
        for var, _, _ in btf.secinfo(section) if section is not None else ():
            name = btf.name(var)
            where = f"{stem}: .rodata {name}"
            if name.startswith(EXPORT_PREFIX):
                exported = btf.resolve(var)
                if btf.kind(exported) != Kind.PTR:
                    raise ContractError(f"{where} is not a BTF_EXPORT() pointer")
                ex.expr(btf.target(exported), where)
            else:
                rodata.append([name, ex.expr(var, where)])
        variables = []  # .data and .bss: settings user space writes while the object runs
        for datasec in (".data", ".bss"):
            section = btf.find(datasec, Kind.DATASEC)
            for var, _, _ in btf.secinfo(section) if section is not None else ():
                name = btf.name(var)
                variables.append([name, ex.expr(var, f"{stem}: {datasec} {name}")])
        members = []
        probe_enum = ex.types.get(f"{stem}_probe")
        if probe_enum is not None and probe_enum["kind"] == "enum":
            prefix = f"{stem.upper()}_"
            members = [name.removeprefix(prefix).lower() for name, _ in probe_enum["members"]
                       if not name.startswith(f"{prefix}_")]
    finally:
        so.bpf_object__close(obj)
    contract: dict[str, Any] = {
        "object": stem,
        "programs": programs,
        "maps": maps,
        "rodata": rodata,
    }
    if variables or members:  # a shared object (bpf/datapath.bpf.c)
        contract.update(globals=variables, members=members)
    contract["types"] = [ex.types[name] for name in sorted(ex.types)]
    return contract


def dumps(contract: dict[str, Any]) -> str:
    """The JSON text of a contract, as committed: one program, map, setting or type a line."""
    lines = ["{"]
    for i, (key, value) in enumerate(contract.items()):
        end = "," if i < len(contract) - 1 else ""
        if isinstance(value, list):
            items = [" " * 2 + json.dumps(item) for item in value]
            lines += [f" {json.dumps(key)}: [", ",\n".join(items), f" ]{end}"] if items else [
                f" {json.dumps(key)}: []{end}"]
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{end}")
    return "\n".join(lines) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    from otel_kubeskoop.bpf import codegen

    parser = argparse.ArgumentParser(prog="python -m otel_kubeskoop.bpf.contract")
    commands = parser.add_subparsers(dest="command", required=True)
    ext = commands.add_parser("extract", help="an object's contract as JSON, on stdout")
    ext.add_argument("object")
    ext.add_argument("headers", nargs="*", help="headers whose types are shared")
    ren = commands.add_parser("render", help="write the Python modules of contracts")
    ren.add_argument("contracts", nargs="+")
    ren.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "extract":
            sys.stdout.write(dumps(extract(args.object, shared_type_names(args.headers))))
        else:
            contracts = [json.loads(Path(p).read_text()) for p in args.contracts]
            codegen.write(contracts, Path(args.out))
    except (ContractError, OSError, ValueError) as exc:
        print(f"contract: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
