# SPDX-License-Identifier: Apache-2.0
"""A handle on one network namespace, through which every ``/proc/<pid>/net/*`` read goes.

No OpenTelemetry and no Kubernetes imports.

A :class:`Netns` handle is a :class:`~otel_kubeskoop.procfs.FileSource`, so every procfs parser
reads through it: ``read_x(handle)`` reads ``net/dev`` of that namespace. Handles are made, kept
from scan to scan and rebound by :class:`~otel_kubeskoop.topology.netns_discovery.NetnsDiscovery`.

How a handle reads:

- **pid-backed** (the namespace has a process): a directory fd on ``/proc/<pid>`` of the
  representative process is opened once, and files are opened relative to it (``openat``). If that
  process exits and its pid is reused by a process in another namespace, reading
  ``/proc/<pid>/net/dev`` by path would silently return the other namespace; the directory fd pins
  the original process instead, and ``openat`` on it fails with ``ESRCH`` once it is reaped
  (``ENOENT`` while it is a zombie); checked on Linux 6.18 by ``tests/privileged/test_netns.py``.
  After every open the handle also checks that ``ns/net`` of the same directory still names its
  namespace (the process may have called ``setns``/``unshare``), at the cost of one ``readlinkat``.
- **named without a process**: nobody's ``/proc/<pid>/net`` shows it. The handle opens
  ``/run/netns/<name>`` (checked against the inode) and has a
  :class:`~otel_kubeskoop.topology.nsexec.NetnsRunner` thread, shared by the discovery's handles,
  enter the namespace and read ``/proc/thread-self/net/*``; the runner goes back to its own
  namespace whenever it has nothing queued, so it never keeps a deleted namespace (and the veth
  devices in it) alive. A named namespace whose representative process has gone is read this way
  too, until the next scan picks another process.

Both raise :class:`NetnsGone` when the namespace can no longer be read through this handle, and pass
``FileNotFoundError`` through unwrapped when the namespace is alive but the file does not exist
(``net/ip_vs_stats`` without the ip_vs module), as every :class:`FileSource` must.

Namespace inodes are the keys everywhere (``net:[4026531840]`` -> ``4026531840``), as in KubeSkoop.
See https://man7.org/linux/man-pages/man7/network_namespaces.7.html.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass

from otel_kubeskoop.procfs import read_fd
from otel_kubeskoop.topology.nsexec import NetnsRunner

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "Netns",
    "NetnsGone",
    "NetnsInfo",
    "parse_netns_link",
]

#: Seconds a read of a namespace without a process waits for the runner thread.
DEFAULT_READ_TIMEOUT = 2.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_THREAD_SELF = "/proc/thread-self"
_LINK_PREFIX = "net:["


class NetnsGone(LookupError):
    """The network namespace can no longer be read through this handle.

    Its representative process exited or moved to another namespace, its ``/run/netns`` name was
    deleted or now names another namespace, or the handle was closed. The next
    :meth:`~otel_kubeskoop.topology.netns_discovery.NetnsDiscovery.scan` rebinds the handle if
    the namespace still exists.
    """

    def __init__(self, inode: int, reason: str = "") -> None:
        self.inode = inode
        self.reason = reason
        message = f"network namespace {inode} is gone"
        super().__init__(f"{message}: {reason}" if reason else message)


@dataclass(frozen=True, slots=True)
class NetnsInfo:
    """What is known about one network namespace at the last scan."""

    inode: int
    #: Representative process (the lowest pid at first sight, kept while it stays); ``None`` for a
    #: named namespace without any process.
    pid: int | None
    #: Its name under ``/run/netns``, when it has one.
    name: str | None
    #: The namespace of the discovery's ``host_pid`` (the node's own network).
    is_host: bool


def parse_netns_link(target: str) -> int | None:
    """The inode in a ``/proc/<pid>/ns/net`` link target (``"net:[4026531840]"``), else ``None``."""
    if not (target.startswith(_LINK_PREFIX) and target.endswith("]")):
        return None
    digits = target[len(_LINK_PREFIX) : -1]
    if not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


class Netns:
    """A handle on one network namespace; a :class:`~otel_kubeskoop.procfs.FileSource`.

    ``read("net/dev")`` returns that namespace's ``net/dev``; see the module docstring for how.
    Handles are made and rebound by
    :class:`~otel_kubeskoop.topology.netns_discovery.NetnsDiscovery`; the attributes reflect the
    last scan.
    Thread-safe: probes may read while a scan rebinds the handle.
    """

    def __init__(
        self,
        inode: int,
        *,
        pid: int | None = None,
        name: str | None = None,
        is_host: bool = False,
        proc_root: str = "/proc",
        netns_dir: str = "/run/netns",
        runner: NetnsRunner | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        """Open a handle reading through ``/proc/<pid>`` if ``pid`` is given, else through
        ``runner`` inside ``<netns_dir>/<name>`` (each read waiting at most ``read_timeout``
        seconds).

        Raises ``OSError`` if ``/proc/<pid>`` cannot be opened and :class:`NetnsGone` if the process
        is not (or no longer) in namespace ``inode``.
        """
        if pid is None and (name is None or runner is None):
            raise ValueError("a Netns without a pid needs a name and a NetnsRunner")
        self._inode = inode
        self._proc_root = proc_root
        self._netns_dir = netns_dir
        self._runner = runner
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._dirfd = -1
        self._pid: int | None = None
        self._name = name
        self._is_host = is_host
        self._closed = False
        self._bind(pid)

    @property
    def inode(self) -> int:
        return self._inode

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def is_host(self) -> bool:
        return self._is_host

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def info(self) -> NetnsInfo:
        with self._lock:
            return NetnsInfo(self._inode, self._pid, self._name, self._is_host)

    def read(self, relpath: str) -> bytes:
        """Read ``relpath`` (``"net/snmp"``) as seen from inside this namespace.

        Raises ``FileNotFoundError`` if the namespace is alive but has no such file, and
        :class:`NetnsGone` if the namespace can no longer be read through this handle. A named
        namespace whose representative process is gone is read from inside it until the next scan
        picks another process.
        """
        if relpath.startswith("/"):
            raise ValueError(f"relative path expected, got {relpath!r}")
        with self._lock:
            if self._closed:
                raise NetnsGone(self._inode, "handle closed")
            dirfd, name, runner = self._dirfd, self._name, self._runner
            if dirfd >= 0:
                # openat under the lock: a concurrent rebind cannot close dirfd (and the kernel
                # hand its number to another file) in between.
                try:
                    fd = self._open_at(dirfd, relpath)
                except NetnsGone:
                    if name is None or runner is None:
                        raise
                    dirfd = -1  # the representative is gone, the name may still lead there
        if dirfd >= 0:
            return read_fd(fd)
        if name is None or runner is None:
            raise NetnsGone(self._inode, "no process and no name to read through")
        return self._read_inside(runner, name, relpath)

    def path(self, relpath: str) -> str:
        """Where ``relpath`` is read from, for messages."""
        pid, name = self._pid, self._name
        if pid is not None:
            return os.path.join(self._proc_root, str(pid), relpath)
        return f"{os.path.join(self._netns_dir, name or '?')}:{_THREAD_SELF}/{relpath}"

    def open_nsfd(self) -> int:
        """A new ``O_RDONLY|O_CLOEXEC`` fd on this namespace's nsfs file, for ``setns(2)``.

        Opened through the pinned ``/proc/<pid>`` (``ns/net``) or ``/run/netns/<name>`` and checked
        against the inode. The caller closes it. Raises :class:`NetnsGone` as :meth:`read` does.
        """
        with self._lock:
            if self._closed:
                raise NetnsGone(self._inode, "handle closed")
            dirfd, name = self._dirfd, self._name
        candidates = []
        if dirfd >= 0:
            candidates.append(("ns/net", dirfd))
        if name is not None:
            candidates.append((os.path.join(self._netns_dir, name), None))
        reason = "no process and no name"
        for path, at in candidates:
            with self._lock:
                if at is not None and at != self._dirfd:
                    continue  # rebound or closed meanwhile
                try:
                    fd = os.open(path, _FILE_FLAGS, dir_fd=at)
                except (FileNotFoundError, ProcessLookupError) as err:
                    reason = str(err)
                    continue
            found = os.fstat(fd).st_ino
            if found == self._inode:
                return fd
            os.close(fd)
            reason = f"{path} now refers to namespace {found}"
        raise NetnsGone(self._inode, reason)

    def close(self) -> None:
        """Release the directory fd; later reads raise :class:`NetnsGone`. Idempotent."""
        with self._lock:
            self._closed = True
            if self._dirfd >= 0:
                os.close(self._dirfd)
                self._dirfd = -1

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<Netns {self._inode} pid={self._pid} name={self._name!r}"
            f"{' host' if self._is_host else ''}{state}>"
        )

    # Internal. NetnsDiscovery calls _alive, _bind and _update.

    def _read_inside(self, runner: NetnsRunner, name: str, relpath: str) -> bytes:
        """``/proc/thread-self/<relpath>`` read by the runner's thread inside the namespace."""
        nsfd = self.open_nsfd()
        try:
            (got,) = runner.run(
                [(nsfd, functools.partial(_read_own, relpath))], timeout=self._read_timeout,
                what=f"reading {relpath} in {os.path.join(self._netns_dir, name)}")
        finally:
            os.close(nsfd)
        if isinstance(got, BaseException):
            raise got
        return got

    def _open_at(self, dirfd: int, relpath: str) -> int:
        try:
            fd = os.open(relpath, _FILE_FLAGS, dir_fd=dirfd)
        except FileNotFoundError:
            if self._dir_alive(dirfd):
                raise
            reason = f"process {self._pid} exited or left the namespace"
            raise NetnsGone(self._inode, reason) from None
        except ProcessLookupError:
            raise NetnsGone(self._inode, f"process {self._pid} exited") from None
        if not self._dir_alive(dirfd):
            os.close(fd)
            raise NetnsGone(self._inode, f"process {self._pid} exited or left the namespace")
        return fd

    def _dir_alive(self, dirfd: int) -> bool:
        """Whether the process behind ``dirfd`` is alive and still in this namespace."""
        try:
            return parse_netns_link(os.readlink("ns/net", dir_fd=dirfd)) == self._inode
        except OSError:
            return False

    def _alive(self) -> bool:
        with self._lock:
            return self._dirfd >= 0 and self._dir_alive(self._dirfd)

    def _bind(self, pid: int | None) -> None:
        """Read through ``/proc/<pid>`` from now on, or from inside the namespace if ``pid=None``."""
        new_fd = -1
        if pid is not None:
            new_fd = os.open(os.path.join(self._proc_root, str(pid)), _DIR_FLAGS)
            if not self._dir_alive(new_fd):
                os.close(new_fd)
                raise NetnsGone(self._inode, f"process {pid} is not in this namespace")
        elif self._name is None or self._runner is None:
            raise ValueError("a Netns without a pid needs a name and a NetnsRunner")
        with self._lock:
            old, self._dirfd, self._pid = self._dirfd, new_fd, pid
            if self._closed:
                self._dirfd = -1
                old = new_fd
            if old >= 0:
                os.close(old)

    def _update(self, name: str | None, is_host: bool) -> None:
        with self._lock:
            self._name = name
            self._is_host = is_host


def _read_own(relpath: str) -> bytes:
    """``relpath`` in the calling thread's own ``/proc/thread-self``."""
    return read_fd(os.open(f"{_THREAD_SELF}/{relpath}", _FILE_FLAGS))
