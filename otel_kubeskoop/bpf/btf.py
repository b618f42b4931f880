# SPDX-License-Identifier: Apache-2.0
"""A small pure-Python BTF reader: kernel enum names, struct layouts and an object's names.

BTF is the kernel's compact type format (https://docs.kernel.org/bpf/btf.html). We read it from
two places, with no bpftool or compiler at run time:

- the running kernel, ``/sys/kernel/btf/vmlinux``: the names behind enum values that differ between
  kernels (``skb_drop_reason``, ``sk_rst_reason``, the TCP states), never copied from one kernel
  (DESIGN section 6), and the ``btf_trace_<tracepoint>`` typedefs that tell whether a BTF
  tracepoint exists;
- a compiled ``.bpf.o`` (its ``.BTF`` ELF section): struct layouts to check the ctypes mirrors in
  :mod:`otel_kubeskoop.bpf.layouts` against, and the program and map names the loader uses.

Parsing is lazy so the ~5 MB vmlinux BTF costs little: one pass records where each type starts,
and names are decoded only when asked for. :func:`vmlinux_btf` parses once per process.

Layout offsets of ``.rodata``/``.data`` variables are zero in a clang-built object until libbpf
fixes them up at open; the loader therefore reads those from libbpf's BTF after open
(:meth:`BTF.datasec`), with the same parser.
"""

from __future__ import annotations

import functools
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BTF",
    "BTFError",
    "Kind",
    "StructLayout",
    "VMLINUX_BTF",
    "elf_section",
    "object_btf",
    "parse_btf",
    "read_btf",
    "sk_rst_reasons",
    "skb_drop_reasons",
    "tcp_states",
    "vmlinux_btf",
]

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off/len, str_off/len


class Kind:
    """``BTF_KIND_*`` from ``include/uapi/linux/btf.h``."""

    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# Bytes that follow the 12-byte common header: (fixed, per vlen item).
_TRAILER = {
    Kind.INT: (4, 0),
    Kind.PTR: (0, 0),
    Kind.ARRAY: (12, 0),
    Kind.STRUCT: (0, 12),
    Kind.UNION: (0, 12),
    Kind.ENUM: (0, 8),
    Kind.FWD: (0, 0),
    Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0),
    Kind.CONST: (0, 0),
    Kind.RESTRICT: (0, 0),
    Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 8),
    Kind.VAR: (4, 0),
    Kind.DATASEC: (0, 12),
    Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (4, 0),
    Kind.TYPE_TAG: (0, 0),
    Kind.ENUM64: (0, 12),
}
_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)


class BTFError(ValueError):
    """Bytes that are not well-formed BTF (or an ELF object without a ``.BTF`` section)."""


@dataclass(frozen=True, slots=True)
class StructLayout:
    """A struct's size and the byte offset of each named member, as the compiler laid it out."""

    name: str
    size: int
    offsets: dict[str, int]


class BTF:
    """Parsed BTF: types indexed by id (1-based; id 0 is ``void``), names decoded on demand."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.source = source
        if len(data) < _HEADER.size:
            raise BTFError(f"{source}: {len(data)} bytes, shorter than a BTF header")
        magic = struct.unpack_from("<H", data)[0]
        if magic == _MAGIC:
            self._end = "<"
        elif magic == 0x9FEB:
            self._end = ">"
        else:
            raise BTFError(f"{source}: bad magic {magic:#06x}, not BTF")
        _, version, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            self._end + "HBBIIIII", data
        )
        if version != 1:
            raise BTFError(f"{source}: BTF version {version}, only version 1 is known")
        types_at, strings_at = hdr_len + type_off, hdr_len + str_off
        if types_at + type_len > len(data) or strings_at + str_len > len(data):
            raise BTFError(f"{source}: sections run past the end of {len(data)} bytes")
        self._types = memoryview(data)[types_at : types_at + type_len]
        self._strings = bytes(data[strings_at : strings_at + str_len])
        self._u32 = struct.Struct(self._end + "I")
        self._hdr = struct.Struct(self._end + "III")
        self._offsets, self._kinds = self._index()
        self._by_name: dict[int, list[int]] | None = None

    def _index(self) -> tuple[array, bytes]:
        """One pass over the type section: where each type starts, and its kind."""
        offsets = array("I", [0])  # id 0 is void
        kinds = bytearray(1)
        types, u32 = self._types, self._u32.unpack_from
        trailer = _TRAILER
        pos, end = 0, len(types)
        append_off, append_kind = offsets.append, kinds.append
        while pos < end:
            if pos + 12 > end:
                raise BTFError(f"{self.source}: truncated type at byte {pos} of the type section")
            info = u32(types, pos + 4)[0]
            kind = (info >> 24) & 0x1F
            spec = trailer.get(kind)
            if spec is None:
                raise BTFError(f"{self.source}: unknown BTF kind {kind} at byte {pos}")
            append_off(pos)
            append_kind(kind)
            pos += 12 + spec[0] + spec[1] * (info & 0xFFFF)
        if pos != end:
            raise BTFError(f"{self.source}: last type runs past the type section")
        return offsets, bytes(kinds)

    # --- raw access -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids, including void (id 0)."""
        return len(self._offsets)

    def kind(self, type_id: int) -> int:
        return self._kinds[type_id]

    def string(self, offset: int) -> str:
        end = self._strings.find(b"\0", offset)
        if end < 0:
            raise BTFError(f"{self.source}: string offset {offset} is not NUL-terminated")
        return self._strings[offset:end].decode()

    def _header(self, type_id: int) -> tuple[int, int, int, int]:
        """(name_off, kind_flag, vlen, size_or_type) of a type."""
        if type_id <= 0 or type_id >= len(self._offsets):
            raise BTFError(f"{self.source}: no type id {type_id}")
        name_off, info, size_type = self._hdr.unpack_from(self._types, self._offsets[type_id])
        return name_off, info >> 31, info & 0xFFFF, size_type

    def name(self, type_id: int) -> str:
        return self.string(self._header(type_id)[0]) if type_id else "void"

    def _items(self, type_id: int, fmt: str) -> Iterator[tuple[int, ...]]:
        """The vlen trailing items of a type, each unpacked with ``fmt``."""
        _, _, vlen, _ = self._header(type_id)
        item = struct.Struct(self._end + fmt)
        start = self._offsets[type_id] + 12 + _TRAILER[self._kinds[type_id]][0]
        for i in range(vlen):
            yield item.unpack_from(self._types, start + i * item.size)

    def _string_offsets(self, name: str) -> list[int]:
        """Every offset in the string section at which exactly ``name`` is stored."""
        needle = b"\0" + name.encode() + b"\0"
        found, pos = [], self._strings.find(needle)
        while pos >= 0:
            found.append(pos + 1)
            pos = self._strings.find(needle, pos + 1)
        return found

    def _names_index(self) -> dict[int, list[int]]:
        if self._by_name is None:
            by_name: dict[int, list[int]] = {}
            unpack, types = self._u32.unpack_from, self._types
            for type_id, pos in enumerate(self._offsets):
                if type_id:
                    name_off = unpack(types, pos)[0]
                    if name_off:
                        by_name.setdefault(name_off, []).append(type_id)
            self._by_name = by_name
        return self._by_name

    # --- queries ----------------------------------------------------------------------------

    def find(self, name: str, kind: int | None = None) -> list[int]:
        """Ids of the types called ``name`` (of one kind if given), in id order."""
        index = self._names_index()
        ids = sorted(i for off in self._string_offsets(name) for i in index.get(off, ()))
        return [i for i in ids if kind is None or self._kinds[i] == kind]

    def has(self, name: str, kind: int | None = None) -> bool:
        return bool(self.find(name, kind))

    def _resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        skip = (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG)
        while type_id and self._kinds[type_id] in skip:
            type_id = self._header(type_id)[3]
        return type_id

    def _enum_members(self, type_id: int) -> list[tuple[str, int]]:
        _, signed, _, _ = self._header(type_id)
        members = []
        if self._kinds[type_id] == Kind.ENUM:
            for name_off, raw in self._items(type_id, "II"):
                value = raw - (1 << 32) if signed and raw >= 1 << 31 else raw
                members.append((self.string(name_off), value))
        else:
            for name_off, lo, hi in self._items(type_id, "III"):
                value = hi << 32 | lo
                if signed and value >= 1 << 63:
                    value -= 1 << 64
                members.append((self.string(name_off), value))
        return members

    def enum_members(self, name: str) -> list[tuple[str, int]]:
        """(member, value) of the enum called ``name``, in declaration order."""
        for type_id in self.find(name):
            if self._kinds[type_id] in _ENUM_KINDS and self._header(type_id)[2]:
                return self._enum_members(type_id)
        raise KeyError(f"{self.source}: no enum {name!r}")

    def enum_members_containing(self, member: str) -> list[tuple[str, int]]:
        """Members of the (possibly anonymous) enum that declares ``member``."""
        offsets = set(self._string_offsets(member))
        if offsets:
            for type_id, kind in enumerate(self._kinds):
                if kind in _ENUM_KINDS:
                    width = "II" if kind == Kind.ENUM else "III"
                    if any(item[0] in offsets for item in self._items(type_id, width)):
                        return self._enum_members(type_id)
        raise KeyError(f"{self.source}: no enum declares {member!r}")

    def enum_values(self, name: str) -> dict[int, str]:
        """Value -> member name of enum ``name``; where values repeat, the first name wins."""
        return _by_value(self.enum_members(name))

    def struct_layout(self, name: str) -> StructLayout:
        """Size and member byte offsets of ``struct name`` (or a typedef of one)."""
        for type_id in self.find(name):
            target = self._resolve(type_id)
            if target and self._kinds[target] in (Kind.STRUCT, Kind.UNION):
                _, bitfields, _, size = self._header(target)
                offsets = {}
                for name_off, _, offset in self._items(target, "III"):
                    bits = offset & 0xFFFFFF if bitfields else offset
                    offsets[self.string(name_off)] = bits // 8
                return StructLayout(name, size, offsets)
        raise KeyError(f"{self.source}: no struct {name!r}")

    def datasec(self, name: str) -> dict[str, tuple[int, int]]:
        """Variable name -> (offset, size) in data section ``name`` (``.rodata``, ``.maps``...)."""
        for type_id in self.find(name, Kind.DATASEC):
            return {
                self.name(var_id): (offset, size)
                for var_id, offset, size in self._items(type_id, "III")
            }
        raise KeyError(f"{self.source}: no data section {name!r}")

    def var_type(self, name: str) -> int:
        """The type id (typedefs and qualifiers skipped) of global variable ``name``."""
        for type_id in self.find(name, Kind.VAR):
            return self._resolve(self._header(type_id)[3])
        raise KeyError(f"{self.source}: no variable {name!r}")

    def int_encoding(self, type_id: int) -> tuple[int, bool]:
        """(size in bytes, signed) of an INT or ENUM type."""
        kind = self._kinds[type_id]
        _, kind_flag, _, size = self._header(type_id)
        if kind == Kind.INT:
            encoding = self._u32.unpack_from(self._types, self._offsets[type_id] + 12)[0]
            return size, bool((encoding >> 24) & 1)
        if kind in _ENUM_KINDS:
            return size, bool(kind_flag)
        raise BTFError(f"{self.source}: type {type_id} is not an integer (kind {kind})")

    def functions(self) -> list[str]:
        """Names of the functions with BTF (in a BPF object: its programs)."""
        return [self.name(i) for i, kind in enumerate(self._kinds) if kind == Kind.FUNC]


def _by_value(members: list[tuple[str, int]]) -> dict[int, str]:
    values: dict[int, str] = {}
    for member, value in members:
        values.setdefault(value, member)
    return values


# --- reading ------------------------------------------------------------------------------


def parse_btf(data: bytes, source: str = "<bytes>") -> BTF:
    """Parse raw BTF bytes (a ``/sys/kernel/btf`` file, an ELF ``.BTF`` section, libbpf's view)."""
    return BTF(data, source)


def read_btf(path: str = VMLINUX_BTF) -> BTF:
    """Read and parse a raw BTF file such as ``/sys/kernel/btf/vmlinux``."""
    with open(path, "rb") as f:
        return parse_btf(f.read(), path)


_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_ELF_SECTION = struct.Struct("<IIQQQQIIQQ")


def elf_section(data: bytes, name: str, source: str = "<bytes>") -> bytes:
    """The contents of section ``name`` of a little-endian ELF64 file (a ``.bpf.o``)."""
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF":
        raise BTFError(f"{source}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise BTFError(f"{source}: not a little-endian 64-bit ELF file")
    fields = _ELF_HEADER.unpack_from(data)
    shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if shentsize != _ELF_SECTION.size or shoff + shnum * shentsize > len(data):
        raise BTFError(f"{source}: bad section header table")

    def section(index: int) -> tuple[int, int, int]:
        sh = _ELF_SECTION.unpack_from(data, shoff + index * shentsize)
        name_off, offset, size = sh[0], sh[4], sh[5]
        if offset + size > len(data):
            raise BTFError(f"{source}: section {index} runs past the end of the file")
        return name_off, offset, size

    _, names_at, names_size = section(shstrndx)
    names = data[names_at : names_at + names_size]
    wanted = name.encode()
    for index in range(shnum):
        name_off, offset, size = section(index)
        end = names.find(b"\0", name_off)
        if names[name_off:end] == wanted:
            return bytes(data[offset : offset + size])
    raise BTFError(f"{source}: no {name} section (was it built with clang -g?)")


def object_btf(path: str) -> BTF:
    """The BTF of a compiled BPF object (its ``.BTF`` section), as the compiler wrote it."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_btf(elf_section(data, ".BTF", path), path + ":.BTF")


@functools.cache
def vmlinux_btf() -> BTF:
    """The running kernel's BTF, parsed once.

    Raises ``FileNotFoundError`` on a kernel without CONFIG_DEBUG_INFO_BTF.
    """
    return read_btf(VMLINUX_BTF)


# --- the running kernel's enums -----------------------------------------------------------


def skb_drop_reasons(btf: BTF | None = None) -> dict[int, str]:
    """``enum skb_drop_reason`` (``SKB_DROP_REASON_NO_SOCKET``...) of the running kernel.

    Values differ between kernels (reasons are added in the middle), hence never hard-coded.
    Since Linux 6.4 the top 16 bits name a subsystem whose reasons live in other enums
    (``mac80211_drop_reason``, ``ovs_drop_reason``); those are not included here.
    """
    return (btf or vmlinux_btf()).enum_values("skb_drop_reason")


def sk_rst_reasons(btf: BTF | None = None) -> dict[int, str]:
    """``enum sk_rst_reason`` (Linux 6.10+): why the kernel sent a TCP RST."""
    return (btf or vmlinux_btf()).enum_values("sk_rst_reason")


def tcp_states(btf: BTF | None = None) -> dict[int, str]:
    """The TCP states (``TCP_ESTABLISHED``...), an anonymous enum in ``include/net/tcp_states.h``.

    ``TCP_MAX_STATES`` is a count, not a state, and is left out.
    """
    members = (btf or vmlinux_btf()).enum_members_containing("TCP_ESTABLISHED")
    return _by_value([(name, value) for name, value in members if name != "TCP_MAX_STATES"])
