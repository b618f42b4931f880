# SPDX-License-Identifier: Apache-2.0
"""A consumer of one BPF ring buffer (``ring_buffer__new``/``__poll``/``__consume``)."""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Callable
from typing import Any

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.libbpf import check_int, check_ptr

__all__ = ["RingBuffer"]

string_at = ctypes.string_at


class RingBuffer:
    """A consumer of one BPF ring buffer. ``callback(record: bytes)`` runs inside :meth:`poll`
    and :meth:`consume`, once per record; with ``batch=True``, ``callback(records: list[bytes])``
    runs once per call with every record it consumed (at tens of thousands of records a second,
    the per-record work in libbpf's callback is then one copy and one append; the decoding and
    emitting loops run once per batch).

    A callback exception does not stop polling: it is counted in ``errors`` (the probe's decode
    error metric) and the latest one kept in ``last_error``. A batch callback must account for
    each of its records itself (``ObjectHandle`` does: decode errors, per record).
    """

    def __init__(self, name: str, map_fd: int, callback: Callable[[Any], None], *,
                 batch: bool = False) -> None:
        self.name = name
        self.received = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._callback = callback
        self._batch: list[bytes] | None = [] if batch else None
        self._lock = threading.Lock()
        self._sample_fn = libbpf.SAMPLE_FN(self._on_batch_sample if batch else self._on_sample)
        self._ptr: int | None = check_ptr(
            libbpf.lib().ring_buffer__new(map_fd, self._sample_fn, None, None),
            f"ring buffer {name}",
        )

    def _on_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self.received += 1
        try:
            self._callback(ctypes.string_at(data, size))
        except Exception as exc:  # counted, never raised into libbpf
            self.errors += 1
            self.last_error = exc
        return 0

    def _on_batch_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._batch.append(string_at(data, size))  # type: ignore[union-attr]
        return 0

    def _deliver(self) -> None:
        """Hand the records the last libbpf call consumed to the batch callback (lock held)."""
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

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records and consume them; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__poll(self._ptr, timeout_ms)
            self._deliver()
        if ret == -errno.EINTR:
            return 0
        return check_int(ret, f"ring buffer {self.name}: poll")

    def consume(self) -> int:
        """Consume what is there without waiting; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__consume(self._ptr)
            self._deliver()
        return check_int(ret, f"ring buffer {self.name}: consume")

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records arrive (for selectors)."""
        if self._ptr is None:
            raise RuntimeError(f"ring buffer {self.name}: closed")
        return libbpf.lib().ring_buffer__epoll_fd(self._ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Free the consumer; waits for a poll in progress. Idempotent."""
        with self._lock:
            if self._ptr is not None:
                libbpf.lib().ring_buffer__free(self._ptr)
                self._ptr = None
