# SPDX-License-Identifier: Apache-2.0
"""A consumer of one BPF ring buffer (``ring_buffer__new``/``__poll``/``__consume``)."""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Callable

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.libbpf import check_int, check_ptr

__all__ = ["RingBuffer"]


class RingBuffer:
    """A consumer of one BPF ring buffer. ``callback(record: bytes)`` runs inside :meth:`poll`.

    A callback exception does not stop polling: it is counted in ``errors`` (the probe's decode
    error metric) and the latest one kept in ``last_error``.
    """

    def __init__(self, name: str, map_fd: int, callback: Callable[[bytes], None]) -> None:
        self.name = name
        self.received = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._callback = callback
        self._lock = threading.Lock()
        self._sample_fn = libbpf.SAMPLE_FN(self._on_sample)  # referenced while the ring lives
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

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records and consume them; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__poll(self._ptr, timeout_ms)
        if ret == -errno.EINTR:
            return 0
        return check_int(ret, f"ring buffer {self.name}: poll")

    def consume(self) -> int:
        """Consume what is there without waiting; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__consume(self._ptr)
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
