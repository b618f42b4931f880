# SPDX-License-Identifier: Apache-2.0
"""Build small BTF blobs in tests, so the BTF reader is tested without a kernel or clang. Encoding per https://docs.kernel.org/bpf/btf.html (``include/uapi/linux/btf.h``)."""

from __future__ import annotations

import struct

from otel_kubeskoop.bpf.btf import Kind


class BTFBuilder:
    def __init__(self, endian: str = "<") -> None:
        self.endian = endian
        self._strings = bytearray(b"\0")
        self._string_offsets: dict[str, int] = {"": 0}
        self._types: list[bytes] = []

    def _str(self, name: str) -> int:
        if name not in self._string_offsets:
            self._string_offsets[name] = len(self._strings)
            self._strings += name.encode() + b"\0"
        return self._string_offsets[name]

    def _add(
        self,
        name: str,
        kind: int,
        vlen: int = 0,
        size_type: int = 0,
        kind_flag: int = 0,
        trailer: bytes = b"",
    ) -> int:
        info = kind_flag << 31 | kind << 24 | vlen
        self._types.append(
            struct.pack(self.endian + "III", self._str(name), info, size_type) + trailer
        )
        return len(self._types)  # ids start at 1

    def _pack(self, fmt: str, *values: int) -> bytes:
        return struct.pack(self.endian + fmt, *values)

    def int_type(self, name: str, size: int, signed: bool = False) -> int:
        return self._add(
            name, Kind.INT, size_type=size, trailer=self._pack("I", int(signed) << 24 | size * 8)
        )

    def ptr(self, type_id: int) -> int:
        return self._add("", Kind.PTR, size_type=type_id)

    def array(self, elem: int, index: int, nelems: int) -> int:
        return self._add("", Kind.ARRAY, trailer=self._pack("III", elem, index, nelems))

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]]) -> int:
        trailer = b"".join(self._pack("III", self._str(m), t, off * 8) for m, t, off in members)
        return self._add(name, Kind.STRUCT, len(members), size, trailer=trailer)

    def enum(self, name: str, members: list[tuple[str, int]], signed: bool = False) -> int:
        trailer = b"".join(
            self._pack("I", self._str(m)) + self._pack("i" if v < 0 else "I", v) for m, v in members
        )
        return self._add(name, Kind.ENUM, len(members), 4, int(signed), trailer)

    def enum64(self, name: str, members: list[tuple[str, int]]) -> int:
        trailer = b"".join(
            self._pack("III", self._str(m), v & 0xFFFFFFFF, v >> 32) for m, v in members
        )
        return self._add(name, Kind.ENUM64, len(members), 8, 0, trailer)

    def typedef(self, name: str, type_id: int) -> int:
        return self._add(name, Kind.TYPEDEF, size_type=type_id)

    def const(self, type_id: int) -> int:
        return self._add("", Kind.CONST, size_type=type_id)

    def volatile(self, type_id: int) -> int:
        return self._add("", Kind.VOLATILE, size_type=type_id)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        trailer = b"".join(self._pack("II", self._str(p), t) for p, t in params)
        return self._add("", Kind.FUNC_PROTO, len(params), ret, trailer=trailer)

    def func(self, name: str, proto: int) -> int:
        return self._add(name, Kind.FUNC, 1, proto)  # vlen 1: global linkage

    def var(self, name: str, type_id: int) -> int:
        return self._add(name, Kind.VAR, size_type=type_id, trailer=self._pack("I", 1))

    def datasec(self, name: str, size: int, variables: list[tuple[int, int, int]]) -> int:
        trailer = b"".join(self._pack("III", *v) for v in variables)
        return self._add(name, Kind.DATASEC, len(variables), size, trailer=trailer)

    def raw_type(self, kind: int, vlen: int = 0) -> int:
        """A type of any kind with an empty trailer (for malformed-input tests)."""
        return self._add("", kind, vlen)

    def build(self) -> bytes:
        types = b"".join(self._types)
        strings = bytes(self._strings)
        header = struct.pack(
            self.endian + "HBBIIIII",
            0xEB9F,
            1,
            0,
            24,
            0,
            len(types),
            len(types),
            len(strings),
        )
        return header + types + strings

