# SPDX-License-Identifier: Apache-2.0
"""Watch a file's directory with inotify(7) and call back once a burst of changes has settled.

The directory, not the file: a Kubernetes ConfigMap volume updates by writing a new
``..<timestamp>/`` directory and renaming a new ``..data`` symlink over the old one, so the path
``config.yaml -> ..data/config.yaml`` never changes and a watch on the file (or on the inode it
resolved to) sees the first update only. Watching the directory sees that rename every time, and
also an editor's write-to-temporary-and-rename and a plain write in place. The callback decides
whether anything changed (it compares what the file now says).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class DirectoryWatch:
    """Calls ``on_change()`` on its own thread after changes in ``directory`` have been quiet for
    ``debounce`` seconds (at most ``max_delay`` after the first of a steady stream)."""

    def __init__(self, directory: str, on_change: Callable[[], None], debounce: float = 0.5,
                 max_delay: float = 5.0) -> None:
        self.directory = directory
        self._on_change = on_change
        self._debounce = debounce
        self._max_delay = max_delay
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._wd = -1
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bursts = 0  # callbacks made (tests and /status)

    def _add_watch(self) -> bool:
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(self.directory), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err != errno.ENOENT:
                log.warning("cannot watch %s: %s", self.directory, os.strerror(err))
            return False
        self._wd = wd
        return True

    def start(self) -> None:
        if not self._add_watch():
            log.warning("config directory %s missing: looking for it every second", self.directory)
        self._thread = threading.Thread(target=self._run, name="kubeskoop-config-watch", daemon=True)
        self._thread.start()

    def _read(self) -> bool:
        """Drain the inotify fd; True when the directory itself went (its watch is gone)."""
        gone = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return gone
            offset = 0
            while offset + _HEADER.size <= len(data):
                _, mask, _, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size + length
                if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    gone = True

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        first: float | None = None  # when the unsettled burst began
        while not self._stop.is_set():
            if first is None:
                timeout = None if self._wd >= 0 else 1.0
            else:
                timeout = max(0.0, min(self._debounce, first + self._max_delay - time.monotonic()))
            ready = poller.poll(None if timeout is None else timeout * 1000)
            if self._stop.is_set():
                return
            if any(fd == self._fd for fd, _ in ready):
                if self._read():
                    if self._wd >= 0:
                        _libc.inotify_rm_watch(self._fd, self._wd)
                    self._wd = -1
                first = first if first is not None else time.monotonic()
                if time.monotonic() - first < self._max_delay:
                    continue
            if self._wd < 0 and self._add_watch():
                first = first if first is not None else time.monotonic()  # it came back: look
                continue
            if first is not None:
                first = None
                self.bursts += 1
                try:
                    self._on_change()
                except Exception as exc:  # the watch outlives a failed callback
                    log.error("config watch callback: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        """Stop watching and close the fds. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
            self._thread = None
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._fd = self._wake_r = self._wake_w = -1
