# SPDX-License-Identifier: Apache-2.0
"""A loaded BPF map, read and written through its file descriptor (the bpf(2) wrappers in
libbpf): single elements, batches where the kernel has them (Linux 5.6+), per-CPU values summed
or listed, and an mmap of an ARRAY created with ``BPF_F_MMAPABLE``."""

from __future__ import annotations

import ctypes
import errno
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.libbpf import BatchOpts, LibbpfError, MapType, check_int

__all__ = ["BPFMap"]

_ENOTSUPP = 524  # the kernel-internal "operation not supported" some map operations return


class Owner(Protocol):
    """What holds the map's fd open: ``obj`` is None once the object is closed."""

    obj: int | None


_SimpleCData: type = ctypes.c_int.__bases__[0]  # ctypes._SimpleCData, not exported


def _is_int_type(t: type[Any] | None) -> bool:
    """A ctypes integer type (c_uint64...), whose instances decode to ``.value``."""
    if t is None or not issubclass(t, _SimpleCData):
        return False
    return isinstance(getattr(t(), "value", None), int)


class BPFMap:
    """A loaded map, read through its file descriptor (valid until the object closes)."""

    #: entries asked for per batch call
    BATCH = 4096

    def __init__(
        self,
        owner: Owner,
        name: str,
        fd: int,
        map_type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        key_type: type[Any] | None = None,
        value_type: type[Any] | None = None,
        percpu: Literal["sum", "list"] | None = None,
        batch: bool = True,
    ) -> None:
        self._owner = owner
        self.name = name
        self.fd = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.key_type = key_type
        self.value_type = value_type
        for t, size, what in ((key_type, key_size, "key"), (value_type, value_size, "value")):
            if t is not None and ctypes.sizeof(t) != size:
                raise TypeError(
                    f"map {name}: {what} type {t.__name__} has {ctypes.sizeof(t)} bytes, "
                    f"the map's have {size}"
                )
        self.is_percpu = map_type in MapType.PERCPU
        self.ncpus = libbpf.lib().libbpf_num_possible_cpus() if self.is_percpu else 1
        if self.ncpus <= 0:
            raise LibbpfError(-self.ncpus, f"map {name}: number of possible CPUs unknown")
        # A per-CPU value is one 8-byte-aligned slot per possible CPU.
        self._slot = (value_size + 7) & ~7 if self.is_percpu else value_size
        self._value_bytes = self._slot * self.ncpus
        if percpu is None:
            percpu = "sum" if value_type is None or _is_int_type(value_type) else "list"
        if (
            percpu == "sum"
            and self.is_percpu
            and not (value_type is None or _is_int_type(value_type))
        ):
            raise TypeError(f"map {name}: only integer per-CPU values can be summed")
        self.percpu = percpu
        self._batch_ok = batch

    def __repr__(self) -> str:
        return f"<BPFMap {self.name} type={self.map_type} entries<={self.max_entries}>"

    def _check_open(self) -> None:
        if self._owner.obj is None:
            raise RuntimeError(f"map {self.name}: its object is closed")

    # encoding

    def _key_bytes(self, key: Any) -> bytes:
        if isinstance(key, int):
            data = key.to_bytes(self.key_size, "little")
        else:
            try:
                data = bytes(key)  # bytes, or a ctypes instance (they export their buffer)
            except TypeError:
                raise TypeError(
                    f"map {self.name}: cannot use {type(key).__name__} as a key"
                ) from None
        if len(data) != self.key_size:
            raise ValueError(
                f"map {self.name}: key of {len(data)} bytes, map keys have {self.key_size}"
            )
        return data

    def _decode_key(self, raw: bytes) -> Any:
        if self.key_type is None:
            return raw
        key = self.key_type.from_buffer_copy(raw)
        return key.value if _is_int_type(self.key_type) else key

    def _decode_one(self, raw: bytes) -> Any:
        if self.value_type is None:
            return int.from_bytes(raw, "little") if self.percpu == "sum" and self.is_percpu else raw
        value = self.value_type.from_buffer_copy(raw)
        return value.value if _is_int_type(self.value_type) else value

    def _decode_value(self, raw: bytes) -> Any:
        if not self.is_percpu:
            return self._decode_one(raw)
        per_cpu = [
            self._decode_one(raw[i * self._slot : i * self._slot + self.value_size])
            for i in range(self.ncpus)
        ]
        return sum(per_cpu) if self.percpu == "sum" else per_cpu

    # single elements

    def lookup(self, key: Any) -> Any | None:
        """The value under ``key``, or None."""
        self._check_open()
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        v = ctypes.create_string_buffer(self._value_bytes)
        ret = libbpf.lib().bpf_map_lookup_elem(self.fd, k, v)
        if ret == -errno.ENOENT:
            return None
        check_int(ret, f"map {self.name}: lookup")
        return self._decode_value(v.raw)

    def update(self, key: Any, value: bytes | Any) -> None:
        """Set ``key`` (for per-CPU maps ``value`` holds every CPU's slot)."""
        self._check_open()
        data = value if isinstance(value, bytes) else bytes(value)
        if len(data) != self._value_bytes:
            raise ValueError(
                f"map {self.name}: value of {len(data)} bytes, need {self._value_bytes}"
            )
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        check_int(
            libbpf.lib().bpf_map_update_elem(
                self.fd, k, ctypes.create_string_buffer(data, len(data)), libbpf.BPF_ANY
            ),
            f"map {self.name}: update",
        )

    def delete(self, key: Any) -> bool:
        """Remove ``key``; False if it was not there."""
        self._check_open()
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        ret = libbpf.lib().bpf_map_delete_elem(self.fd, k)
        if ret == -errno.ENOENT:
            return False
        check_int(ret, f"map {self.name}: delete")
        return True

    def _raw_keys(self) -> list[bytes]:
        """Every key, by get_next_key (bounded, since a map can change while we walk it)."""
        so = libbpf.lib()
        keys: list[bytes] = []
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        for _ in range(2 * self.max_entries + 1):
            ret = so.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -errno.ENOENT:
                break
            check_int(ret, f"map {self.name}: get_next_key")
            keys.append(nxt.raw)
            prev = ctypes.create_string_buffer(nxt.raw, self.key_size)
        return list(dict.fromkeys(keys))

    # whole map

    @contextmanager
    def mapped(self) -> Iterator[memoryview]:
        """The values of an ARRAY map created with BPF_F_MMAPABLE, in place, read and write:
        value i at i * (value size rounded up to 8) (kernel/bpf/arraymap.c, elem_size). One
        mmap() for the whole array instead of a copy through the syscall per read."""
        self._check_open()
        if self.map_type != MapType.ARRAY:
            raise TypeError(f"map {self.name}: only an array map can be mapped")
        size = self.max_entries * ((self.value_size + 7) & ~7)
        length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        area = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            with memoryview(area) as whole, whole[:size] as view:
                yield view
        finally:
            area.close()

    def _batch(self, delete: bool) -> list[tuple[bytes, bytes]] | None:
        """All entries by BPF_MAP_LOOKUP(_AND_DELETE)_BATCH; None where the kernel lacks it."""
        so = libbpf.lib()
        fn = so.bpf_map_lookup_and_delete_batch if delete else so.bpf_map_lookup_batch
        token_size = max(self.key_size, 8)
        in_batch: ctypes.Array[ctypes.c_char] | None = None
        out_batch = ctypes.create_string_buffer(token_size)
        chunk = max(1, min(self.max_entries, self.BATCH))
        opts = BatchOpts()
        entries: list[tuple[bytes, bytes]] = []
        first = True
        while True:
            keys = ctypes.create_string_buffer(chunk * self.key_size)
            values = ctypes.create_string_buffer(chunk * self._value_bytes)
            count = ctypes.c_uint32(chunk)
            ret = fn(
                self.fd, in_batch, out_batch, keys, values, ctypes.byref(count), ctypes.byref(opts)
            )
            n = count.value
            for i in range(n):
                entries.append(
                    (
                        keys.raw[i * self.key_size : (i + 1) * self.key_size],
                        values.raw[i * self._value_bytes : (i + 1) * self._value_bytes],
                    )
                )
            if ret == 0:
                in_batch = ctypes.create_string_buffer(out_batch.raw, token_size)
                first = False
                continue
            err = -ret
            if err == errno.ENOENT:
                return entries
            if err == errno.ENOSPC and n == 0 and chunk < 1 << 20:
                chunk *= 2  # a hash bucket holds more entries than one chunk
                continue
            if first and err in (
                errno.EINVAL,
                errno.EOPNOTSUPP,
                errno.ENOSYS,
                errno.EPERM,
                _ENOTSUPP,
            ):
                return None
            check_int(ret, f"map {self.name}: {'lookup_and_delete' if delete else 'lookup'} batch")

    def _entries(self) -> list[tuple[bytes, bytes]]:
        self._check_open()
        if self._batch_ok:
            found = self._batch(delete=False)
            if found is not None:
                return found
            self._batch_ok = False
        so = libbpf.lib()
        entries = []
        for key in self._raw_keys():
            v = ctypes.create_string_buffer(self._value_bytes)
            if so.bpf_map_lookup_elem(self.fd, key, v) == 0:
                entries.append((key, v.raw))
        return entries

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value), decoded."""
        return [(self._decode_key(k), self._decode_value(v)) for k, v in self._entries()]

    def pop_all(self) -> list[tuple[Any, Any]]:
        """Read and remove every entry (hash maps): the kernel starts counting again from zero.

        Arrays cannot remove entries; read them with :meth:`items` and take differences.
        """
        self._check_open()
        if self.map_type not in MapType.HASHES:
            raise TypeError(f"map {self.name}: pop_all needs a hash map; read arrays with items()")
        raw: list[tuple[bytes, bytes]] | None = None
        if self._batch_ok:
            raw = self._batch(delete=True)
        if raw is None:
            so = libbpf.lib()
            raw = []
            for key in self._raw_keys():
                v = ctypes.create_string_buffer(self._value_bytes)
                ret = so.bpf_map_lookup_and_delete_elem(self.fd, key, v)
                if ret in (-errno.EINVAL, -errno.EOPNOTSUPP, -_ENOTSUPP):  # before Linux 5.14
                    ret = so.bpf_map_lookup_elem(self.fd, key, v)
                    if ret == 0:
                        so.bpf_map_delete_elem(self.fd, key)
                if ret == 0:
                    raw.append((key, v.raw))
        return [(self._decode_key(k), self._decode_value(v)) for k, v in raw]
