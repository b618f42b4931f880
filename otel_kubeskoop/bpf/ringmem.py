# SPDX-License-Identifier: Apache-2.0
"""A BPF ring buffer read straight from its memory, many records per call, without libbpf's
per-record callback (about 2 us of Python per record: the ctypes callback and the copy).

The kernel's layout (https://docs.kernel.org/bpf/ringbuf.html, kernel/bpf/ringbuf.c): the map's
first page holds the consumer position (written by user space), the next the producer position,
then the data area of ``max_entries`` bytes, mapped twice in a row so that a record that wraps
reads as one. Each record has an 8-byte header: its length, with the BUSY bit while the producer
still writes it and the DISCARD bit when it was discarded, then the data, padded to 8 bytes.
libbpf reads the header with an acquire load and writes the consumer position with a release
store (tools/lib/bpf/ringbuf.c); on x86-64 plain loads and stores have those orderings, and a
Python access is an opaque C call the compiler cannot reorder, so :data:`SUPPORTED` is x86-64
only and other machines use libbpf's consumer.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import struct

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.libbpf import check_int

__all__ = ["MappedRing", "SUPPORTED", "ring_size"]

SUPPORTED = platform.machine() == "x86_64"

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8
_MAP_FAILED = ctypes.c_void_p(-1).value


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _map(fd: int, length: int, prot: int, offset: int, what: str) -> int:
    addr = _libc().mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"ring buffer {what}: mmap of {length} bytes at {offset}")
    return addr


BPF_MAP_TYPE_RINGBUF = 27
_MAP_INFO = struct.Struct("<IIIII")  # struct bpf_map_info: type, id, key_size, value_size, max_entries


def ring_size(fd: int, name: str) -> int:
    """The data size (``max_entries``) of the ring buffer map ``fd``, from the kernel."""
    buf = ctypes.create_string_buffer(80)
    size = ctypes.c_uint32(len(buf))
    check_int(libbpf.lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size)), f"ring buffer {name}: map info")
    map_type, _, _, _, max_entries = _MAP_INFO.unpack_from(buf.raw)
    if map_type != BPF_MAP_TYPE_RINGBUF:
        raise TypeError(f"ring buffer {name}: map type {map_type}, not a ring buffer")
    return max_entries


class MappedRing:
    """The consumer side of one ring buffer map (``fd``, ``size`` = its ``max_entries``, a power
    of two). Not thread-safe: its owner serializes :meth:`read` and :meth:`close`."""

    def __init__(self, fd: int, size: int, name: str) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer {name}: size {size} is not a power of two")
        page = mmap.PAGESIZE
        self._size = size
        self._mask = size - 1
        self._consumer_map = _map(fd, page, mmap.PROT_READ | mmap.PROT_WRITE, 0, name)
        try:
            self._producer_map = _map(fd, page + 2 * size, mmap.PROT_READ, page, name)
        except OSError:
            _libc().munmap(self._consumer_map, page)
            raise
        self._consumer = ctypes.c_uint64.from_address(self._consumer_map)
        self._producer = ctypes.c_uint64.from_address(self._producer_map)
        data = self._producer_map + page
        self._data = (ctypes.c_char * (2 * size)).from_address(data)  # slices are bytes
        self._headers = (ctypes.c_uint32 * (2 * size // 4)).from_address(data)  # aligned 4-byte loads

    def read(self, records: list[bytes]) -> int:
        """Append the committed records to ``records`` and release their space; how many."""
        cons = self._consumer.value
        prod = self._producer.value
        mask, data, headers, start = self._mask, self._data, self._headers, len(records)
        append = records.append
        while cons < prod:
            at = cons & mask
            length = headers[at >> 2]
            if length & BUSY:
                break
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                append(data[at + HEADER:at + HEADER + size])
            cons += (size + HEADER + 7) & ~7
        self._consumer.value = cons
        return len(records) - start

    def close(self) -> None:
        """Unmap; the views into the memory go first, so a stray read fails instead of faulting."""
        if self._consumer_map:
            del self._consumer, self._producer, self._data, self._headers
            page = mmap.PAGESIZE
            _libc().munmap(self._producer_map, page + 2 * self._size)
            _libc().munmap(self._consumer_map, page)
            self._consumer_map = self._producer_map = 0
