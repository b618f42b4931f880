# SPDX-License-Identifier: Apache-2.0
"""BTF through libbpf: kernel enum names, struct layouts, an object's types.

BTF is the kernel's compact type format (https://docs.kernel.org/bpf/btf.html). libbpf parses and
validates it (``btf__load_vmlinux_btf``, ``btf__parse``, ``btf__new``; ``bpf_object__btf`` for an
opened object, with its data sections' offsets filled in), finds types by name and kind
(``btf__find_by_name_kind``), names them (``btf__name_by_offset``) and resolves typedefs and
sizes (``btf__resolve_type``, ``btf__resolve_size``). What libbpf only offers as inline functions
of ``btf.h`` is done here: reading one type record, ``struct btf_type`` and the members, enum
values, array or section variables that follow it (``include/uapi/linux/btf.h``), and the one
search libbpf has no function for, the enum declaring a given member (the TCP states are an
anonymous enum).

We read BTF from two places, with no bpftool or compiler at run time:

- the running kernel, ``/sys/kernel/btf/vmlinux``: the names behind enum values that differ
  between kernels (``skb_drop_reason``, ``sk_rst_reason``, the TCP states), never copied from one
  kernel, and the ``btf_trace_<tracepoint>`` typedefs that tell whether a BTF tracepoint exists;
- a compiled ``.bpf.o`` (:mod:`otel_kubeskoop.bpf.contract` reads its types at build time, the
  loader its ``.rodata`` layout at open).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from otel_kubeskoop.bpf import libbpf

__all__ = [
    "BTF",
    "BTFError",
    "Kind",
    "Member",
    "StructLayout",
    "VMLINUX_BTF",
    "parse_btf",
    "read_btf",
    "sk_rst_reasons",
    "skb_drop_reasons",
    "tcp_states",
    "vmlinux_btf",
]

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


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


_ENUM_KINDS = (Kind.ENUM, Kind.ENUM64)
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4  # BTF_INT_ENCODING bits
_U32 = ctypes.c_uint32


class _Type(ctypes.Structure):
    """``struct btf_type``: name, info (kind, vlen, kind_flag), size or type."""

    _fields_ = [("name_off", _U32), ("info", _U32), ("size_type", _U32)]


class _Member(ctypes.Structure):
    """``struct btf_member`` (offset in bits; with kind_flag, bitfield size << 24 | offset)."""

    _fields_ = [("name_off", _U32), ("type", _U32), ("offset", _U32)]


class _Enum(ctypes.Structure):
    _fields_ = [("name_off", _U32), ("val", _U32)]


class _Enum64(ctypes.Structure):
    _fields_ = [("name_off", _U32), ("lo", _U32), ("hi", _U32)]


class _Array(ctypes.Structure):
    _fields_ = [("type", _U32), ("index_type", _U32), ("nelems", _U32)]


class _Secinfo(ctypes.Structure):
    """``struct btf_var_secinfo``: a variable of a data section."""

    _fields_ = [("type", _U32), ("offset", _U32), ("size", _U32)]


_HEADER = ctypes.sizeof(_Type)


class BTFError(ValueError):
    """BTF that libbpf refuses, or a type that is not what was asked for."""


@dataclass(frozen=True, slots=True)
class StructLayout:
    """A struct's size and the byte offset of each named member, as the compiler laid it out."""

    name: str
    size: int
    offsets: dict[str, int]


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a struct or union: its type id, and offset and width in bits (0: no
    bitfield)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


class BTF:
    """A BTF that libbpf parsed: type ids from 1 (0 is ``void``), read record by record.

    ``owner`` keeps the memory alive when libbpf owns the BTF (an object's); otherwise the BTF is
    freed with this handle.
    """

    def __init__(self, ptr: int, source: str, owner: object | None = None) -> None:
        self.source = source
        self._ptr = ptr
        self._owner = owner
        self._so = libbpf.lib()
        if owner is None:
            weakref.finalize(self, self._so.btf__free, ptr)

    # --- one record -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids, including void (id 0)."""
        return self._so.btf__type_cnt(self._ptr)

    def _record(self, type_id: int) -> tuple[int, _Type]:
        if type_id <= 0 or type_id >= len(self):
            raise BTFError(f"{self.source}: no type id {type_id}")
        ptr = self._so.btf__type_by_id(self._ptr, type_id)
        return ptr, _Type.from_address(ptr)

    def _items(self, type_id: int, item: type[ctypes.Structure]) -> ctypes.Array:
        """The vlen records of ``item`` that follow a type's header."""
        ptr, t = self._record(type_id)
        return (item * (t.info & 0xFFFF)).from_address(ptr + _HEADER)

    def kind(self, type_id: int) -> int:
        return (self._record(type_id)[1].info >> 24) & 0x1F

    def string(self, offset: int) -> str:
        raw = self._so.btf__name_by_offset(self._ptr, offset)
        if raw is None:
            raise BTFError(f"{self.source}: no string at offset {offset}")
        return raw.decode()

    def name(self, type_id: int) -> str:
        return self.string(self._record(type_id)[1].name_off) if type_id else "void"

    def size(self, type_id: int) -> int:
        """Bytes of a type (typedefs and qualifiers followed), by ``btf__resolve_size``."""
        return libbpf.check_int(
            self._so.btf__resolve_size(self._ptr, type_id), f"{self.source}: size of {type_id}"
        )

    def resolve(self, type_id: int) -> int:
        """The type under typedefs, qualifiers and a variable, by ``btf__resolve_type``."""
        return libbpf.check_int(
            self._so.btf__resolve_type(self._ptr, type_id), f"{self.source}: type {type_id}"
        )

    def target(self, type_id: int) -> int:
        """The type a pointer, typedef, qualifier, variable or function refers to."""
        return self._record(type_id)[1].size_type

    def members(self, type_id: int) -> list[Member]:
        """The members of a struct or union, in order."""
        _, t = self._record(type_id)
        bitfields = t.info >> 31
        return [Member(self.string(m.name_off), m.type,
                       m.offset & 0xFFFFFF if bitfields else m.offset,
                       m.offset >> 24 if bitfields else 0)
                for m in self._items(type_id, _Member)]

    def array(self, type_id: int) -> tuple[int, int]:
        """(element type id, number of elements) of an array."""
        arr = _Array.from_address(self._record(type_id)[0] + _HEADER)
        return arr.type, arr.nelems

    def int_encoding(self, type_id: int) -> tuple[int, bool]:
        """(size in bytes, signed) of an INT or ENUM type."""
        kind = self.kind(type_id)
        ptr, t = self._record(type_id)
        if kind == Kind.INT:
            encoding = ctypes.c_uint32.from_address(ptr + _HEADER).value >> 24
            return t.size_type, bool(encoding & _INT_SIGNED)
        if kind in _ENUM_KINDS:
            return t.size_type, bool(t.info >> 31)
        raise BTFError(f"{self.source}: type {type_id} is not an integer (kind {kind})")

    def int_flavour(self, type_id: int) -> str:
        """``bool``, ``char`` or ``int`` for an INT type (its BTF encoding, or the C ``char``)."""
        encoding = ctypes.c_uint32.from_address(self._record(type_id)[0] + _HEADER).value >> 24
        if encoding & _INT_BOOL:
            return "bool"
        if encoding & _INT_CHAR or self.name(type_id) == "char":
            return "char"
        return "int"

    def enum_items(self, type_id: int) -> list[tuple[str, int]]:
        """(member, value) of an ENUM or ENUM64 type, in declaration order."""
        kind = self.kind(type_id)
        signed = bool(self._record(type_id)[1].info >> 31)
        members = []
        if kind == Kind.ENUM:
            for e in self._items(type_id, _Enum):
                value = e.val - (1 << 32) if signed and e.val >= 1 << 31 else e.val
                members.append((self.string(e.name_off), value))
        elif kind == Kind.ENUM64:
            for e in self._items(type_id, _Enum64):
                value = e.hi << 32 | e.lo
                if signed and value >= 1 << 63:
                    value -= 1 << 64
                members.append((self.string(e.name_off), value))
        else:
            raise BTFError(f"{self.source}: type {type_id} is not an enum (kind {kind})")
        return members

    def secinfo(self, type_id: int) -> list[tuple[int, int, int]]:
        """(variable type id, offset, size) of each variable of a data section."""
        return [(v.type, v.offset, v.size) for v in self._items(type_id, _Secinfo)]

    def vlen(self, type_id: int) -> int:
        return self._record(type_id)[1].info & 0xFFFF

    # --- by name --------------------------------------------------------------------------

    def find(self, name: str, kind: int) -> int | None:
        """The first type called ``name`` of ``kind``, by ``btf__find_by_name_kind``."""
        found = self._so.btf__find_by_name_kind(self._ptr, name.encode(), kind)
        return found if found > 0 else None

    def has(self, name: str, kind: int) -> bool:
        return self.find(name, kind) is not None

    def _ids(self, kinds: tuple[int, ...]) -> Iterator[int]:
        """Every type id of one of ``kinds``, in id order (a walk over all types)."""
        by_id, info = self._so.btf__type_by_id, _U32.from_address
        for type_id in range(1, len(self)):
            if (info(by_id(self._ptr, type_id) + 4).value >> 24) & 0x1F in kinds:
                yield type_id

    def enum_members(self, name: str) -> list[tuple[str, int]]:
        """(member, value) of the enum called ``name``; a forward declaration (no members) is
        passed over for the definition."""
        for kind in _ENUM_KINDS:
            found = self.find(name, kind)
            if found is None:
                continue
            if self.vlen(found):
                return self.enum_items(found)
            for type_id in self._ids(_ENUM_KINDS):
                if self.vlen(type_id) and self.name(type_id) == name:
                    return self.enum_items(type_id)
        raise KeyError(f"{self.source}: no enum {name!r}")

    def enum_members_containing(self, member: str) -> list[tuple[str, int]]:
        """Members of the (possibly anonymous) enum that declares ``member``."""
        for type_id in self._ids(_ENUM_KINDS):
            items = self.enum_items(type_id)
            if any(name == member for name, _ in items):
                return items
        raise KeyError(f"{self.source}: no enum declares {member!r}")

    def enum_values(self, name: str) -> dict[int, str]:
        """Value -> member name of enum ``name``; where values repeat, the first name wins."""
        return _by_value(self.enum_members(name))

    def struct_layout(self, name: str) -> StructLayout:
        """Size and member byte offsets of ``struct name`` (or a typedef of one)."""
        for kind in (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF):
            found = self.find(name, kind)
            if found is None:
                continue
            target = self.resolve(found)
            if self.kind(target) in (Kind.STRUCT, Kind.UNION):
                offsets = {m.name: m.bit_offset // 8 for m in self.members(target)}
                return StructLayout(name, self.size(target), offsets)
        raise KeyError(f"{self.source}: no struct {name!r}")

    def datasec(self, name: str) -> dict[str, tuple[int, int]]:
        """Variable name -> (offset, size) in data section ``name`` (``.rodata``, ``.maps``...)."""
        found = self.find(name, Kind.DATASEC)
        if found is None:
            raise KeyError(f"{self.source}: no data section {name!r}")
        return {self.name(var): (offset, size) for var, offset, size in self.secinfo(found)}

    def var_type(self, name: str) -> int:
        """The type id (typedefs and qualifiers skipped) of global variable ``name``."""
        found = self.find(name, Kind.VAR)
        if found is None:
            raise KeyError(f"{self.source}: no variable {name!r}")
        return self.resolve(found)


def _by_value(members: list[tuple[str, int]]) -> dict[int, str]:
    values: dict[int, str] = {}
    for member, value in members:
        values.setdefault(value, member)
    return values


# --- reading ------------------------------------------------------------------------------


def _refused(source: str, lines: list[str]) -> BTFError:
    err = ctypes.get_errno() or errno.EINVAL
    said = "; ".join(line.strip() for line in lines if line.strip())
    return BTFError(f"{source}: libbpf refused the BTF ({libbpf.strerror(err)})"
                    + (f": {said}" if said else ""))


def parse_btf(data: bytes, source: str = "<bytes>") -> BTF:
    """BTF from raw bytes (a ``/sys/kernel/btf`` file's, or built in a test), by ``btf__new``."""
    with libbpf.captured_log() as lines:
        ptr = libbpf.lib().btf__new(ctypes.create_string_buffer(data, len(data)), len(data))
    if not ptr:
        raise _refused(source, lines)
    return BTF(ptr, source)


def read_btf(path: str = VMLINUX_BTF) -> BTF:
    """The BTF of a raw BTF file or an ELF object's ``.BTF`` section, by ``btf__parse``.

    Raises ``FileNotFoundError`` when there is no such file.
    """
    with libbpf.captured_log() as lines:
        ptr = libbpf.lib().btf__parse(path.encode(), None)
    if not ptr:
        if ctypes.get_errno() == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, "no BTF file", path)
        raise _refused(path, lines)
    return BTF(ptr, path)


@functools.cache
def vmlinux_btf() -> BTF:
    """The running kernel's BTF, parsed once (``btf__load_vmlinux_btf``, which reads
    ``/sys/kernel/btf/vmlinux``).

    Raises ``FileNotFoundError`` on a kernel without CONFIG_DEBUG_INFO_BTF.
    """
    with libbpf.captured_log() as lines:
        ptr = libbpf.lib().btf__load_vmlinux_btf()
    if not ptr:
        if ctypes.get_errno() in (errno.ENOENT, errno.ESRCH):
            raise FileNotFoundError(errno.ENOENT, "kernel without BTF", VMLINUX_BTF)
        raise _refused(VMLINUX_BTF, lines)
    return BTF(ptr, VMLINUX_BTF)


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
