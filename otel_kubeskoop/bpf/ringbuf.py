# SPDX-License-Identifier: Apache-2.0
"""A consumer of one BPF ring buffer: libbpf's (``ring_buffer__new``/``__poll``/``__consume``),
or, for batches on x86-64, a read straight from the ring's memory (``bpf/ringmem.py``)."""

from __future__ import annotations

import ctypes
import errno
import select
import threading
from collections.abc import Callable
from typing import Any

from otel_kubeskoop.bpf import libbpf, ringmem
from otel_kubeskoop.bpf.libbpf import check_int, check_ptr

__all__ = ["RingBuffer"]

string_at = ctypes.string_at


class RingBuffer:
    """A consumer of one BPF ring buffer. ``callback(record: bytes)`` runs inside :meth:`poll`
    and :meth:`consume`, once per record; with ``batch=True``, ``callback(records: list[bytes])``
    runs once per call with every record it consumed, so that the decoding and emitting loops run
    once per batch. Batches are read straight from the ring's memory where that is supported
    (``ringmem.SUPPORTED``; ``direct=False`` forces libbpf's consumer, whose per-record callback
    then only copies and appends).

    A callback exception does not stop polling: it is counted in ``errors`` (the probe's decode
    error metric) and the latest one kept in ``last_error``. A batch callback must account for
    each of its records itself (``ObjectHandle`` does: decode errors, per record).
    """

    def __init__(self, name: str, map_fd: int, callback: Callable[[Any], None], *,
                 batch: bool = False, direct: bool | None = None) -> None:
        self.name = name
        self.received = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._callback = callback
        self._batch: list[bytes] = []
        self._lock = threading.Lock()
        self._ptr: int | None = None
        self._mapped: ringmem.MappedRing | None = None
        self._fd = map_fd
        if batch and (ringmem.SUPPORTED if direct is None else direct):
            self._mapped = ringmem.MappedRing(map_fd, ringmem.ring_size(map_fd, name), name)
            return
        self._sample_fn = libbpf.SAMPLE_FN(self._on_batch_sample if batch else self._on_sample)
        self._ptr = check_ptr(
            libbpf.lib().ring_buffer__new(map_fd, self._sample_fn, None, None),
            f"ring buffer {name}",
        )

    @property
    def direct(self) -> bool:
        """Whether records are read straight from the ring's memory."""
        return self._mapped is not None

    def _on_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self.received += 1
        try:
            self._callback(ctypes.string_at(data, size))
        except Exception as exc:  # counted, never raised into libbpf
            self.errors += 1
            self.last_error = exc
        return 0

    def _on_batch_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._batch.append(string_at(data, size))
        return 0

    def _deliver(self) -> None:
        """Hand the records read to the batch callback (lock held)."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self.received += len(batch)
        try:
            self._callback(batch)
        except Exception as exc:  # counted, never raised into the pump
            self.errors += 1
            self.last_error = exc

    def _check_open(self) -> None:
        if self._ptr is None and self._mapped is None:
            raise RuntimeError(f"ring buffer {self.name}: closed")

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records and consume them; the number consumed."""
        if self._mapped is not None:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            poller.poll(timeout_ms)
            return self.consume()
        with self._lock:
            self._check_open()
            ret = libbpf.lib().ring_buffer__poll(self._ptr, timeout_ms)
            self._deliver()
        if ret == -errno.EINTR:
            return 0
        return check_int(ret, f"ring buffer {self.name}: poll")

    def consume(self) -> int:
        """Consume what is there without waiting; the number consumed."""
        with self._lock:
            self._check_open()
            if self._mapped is not None:
                ret = self._mapped.read(self._batch)
            else:
                ret = libbpf.lib().ring_buffer__consume(self._ptr)
            self._deliver()
        return check_int(ret, f"ring buffer {self.name}: consume")

    def fileno(self) -> int:
        """An fd that becomes readable when records arrive (for selectors): the map's own when
        read directly, else libbpf's epoll fd."""
        self._check_open()
        if self._mapped is not None:
            return self._fd
        return libbpf.lib().ring_buffer__epoll_fd(self._ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None and self._mapped is None

    def close(self) -> None:
        """Free the consumer; waits for a poll in progress. Idempotent."""
        with self._lock:
            if self._ptr is not None:
                libbpf.lib().ring_buffer__free(self._ptr)
                self._ptr = None
            if self._mapped is not None:
                self._mapped.close()
                self._mapped = None
