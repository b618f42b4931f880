# SPDX-License-Identifier: Apache-2.0
"""Network namespace discovery and per-namespace reads of ``/proc/<pid>/net/*``.

No OpenTelemetry and no Kubernetes imports.

:class:`NetnsDiscovery` finds every network namespace on the node: the ones that hold a process
(``readlink /proc/<pid>/ns/net`` for every pid) and the named ones under ``/run/netns`` (``ip netns
add``; CNI plugins create them too). It keeps one :class:`Netns` handle per namespace, reused from
scan to scan. A handle is a :class:`~otel_kubeskoop.procfs.FileSource`, so every procfs parser reads
through it: ``read_x(handle)`` reads ``net/dev`` of that namespace.

How a handle reads:

- **pid-backed** (the namespace has a process): a directory fd on ``/proc/<pid>`` of the
  representative process is opened once, and files are opened relative to it (``openat``). If that
  process exits and its pid is reused by a process in another namespace, reading
  ``/proc/<pid>/net/dev`` by path would silently return the other namespace; the directory fd pins
  the original process instead, and ``openat`` on it fails with ``ESRCH`` once it is reaped
  (``ENOENT`` while it is a zombie); checked on Linux 6.18 by ``tests/privileged/test_netns.py``.
  After every open the handle also checks that ``ns/net`` of the same directory still names its
  namespace (the process may have called ``setns``/``unshare``), at the cost of one ``readlinkat``.
- **named without a process**: nobody's ``/proc/<pid>/net`` shows it. A single worker thread
  (:class:`SetnsReader`) enters the namespace with ``setns(2)`` and reads
  ``/proc/thread-self/net/*``, which shows the calling thread's namespace. It returns to its
  original namespace whenever it has no more requests queued, so it never keeps a deleted namespace
  (and the veth devices in it) alive. A named namespace whose representative process has gone is
  read this way too, until the next scan picks another process.

Both raise :class:`NetnsGone` when the namespace can no longer be read through this handle, and pass
``FileNotFoundError`` through unwrapped when the namespace is alive but the file does not exist
(``net/ip_vs_stats`` without the ip_vs module), as every :class:`FileSource` must.

Namespace inodes are the keys everywhere (``net:[4026531840]`` -> ``4026531840``), as in KubeSkoop.
See https://man7.org/linux/man-pages/man7/network_namespaces.7.html and
https://man7.org/linux/man-pages/man2/setns.2.html.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from otel_kubeskoop.procfs import read_fd

__all__ = [
    "CLONE_NEWNET",
    "DEFAULT_READ_TIMEOUT",
    "Netns",
    "NetnsDiscovery",
    "NetnsGone",
    "NetnsInfo",
    "SetnsReader",
    "parse_netns_link",
]

_log = logging.getLogger(__name__)

#: ``setns(2)`` nstype for a network namespace (``<linux/sched.h>``).
CLONE_NEWNET = 0x40000000

#: Seconds a caller waits for the :class:`SetnsReader` thread to answer one read.
DEFAULT_READ_TIMEOUT = 2.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_THREAD_SELF = "/proc/thread-self"
_LINK_PREFIX = "net:["
_KTHREADD_PID = 2

# One SetnsReader request: (path of the nsfs file, expected inode, relpath, where the answer goes).
_Request = tuple[str, int, str, "Future[bytes]"]


class NetnsGone(LookupError):
    """The network namespace can no longer be read through this handle.

    Its representative process exited or moved to another namespace, its ``/run/netns`` name was
    deleted or now names another namespace, or the handle was closed. The next
    :meth:`NetnsDiscovery.scan` rebinds the handle if the namespace still exists.
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


@functools.cache
def _libc_setns():  # type: ignore[no-untyped-def]
    func = ctypes.CDLL(None, use_errno=True).setns
    func.argtypes = (ctypes.c_int, ctypes.c_int)
    func.restype = ctypes.c_int
    return func


def _setns(fd: int) -> None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread (Python 3.11 has no ``os.setns``)."""
    if _libc_setns()(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


class SetnsReader:
    """One daemon thread that reads files of named network namespaces that have no process.

    :meth:`read` queues a request and waits for the answer (``timeout`` seconds, default 2). For
    each request the thread opens ``/run/netns/<name>``, checks that its inode is the expected one
    (a name deleted and re-created points at another namespace: :class:`NetnsGone`), enters it with
    ``setns(2)`` and reads ``/proc/thread-self/<relpath>``. When its queue is empty it goes back to
    the namespace it started in, so it never pins a deleted namespace. Other threads of the process
    are never affected: ``setns`` changes only the calling thread.

    The thread starts at the first request. :meth:`stop` ends and joins it (requests queued before
    are still answered); a later :meth:`read` starts a new one.
    """

    def __init__(self, timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Request | None] | None = None

    def read(self, ns_path: str, inode: int, relpath: str, timeout: float | None = None) -> bytes:
        """Read ``/proc/thread-self/<relpath>`` inside the namespace bind-mounted at ``ns_path``.

        Raises :class:`NetnsGone` if ``ns_path`` is gone or names another namespace than ``inode``,
        ``FileNotFoundError`` if the file does not exist in that namespace, ``TimeoutError`` if the
        thread does not answer in time, and any other ``OSError`` as is.
        """
        future: Future[bytes] = Future()
        with self._lock:
            if self._thread is None or self._queue is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._queue,), name="kubeskoop-setns", daemon=True
                )
                self._thread.start()
            self._queue.put((ns_path, inode, relpath, future))
        wait = self.timeout if timeout is None else timeout
        try:
            return future.result(wait)
        except TimeoutError:
            if future.cancel() or not future.done():
                raise TimeoutError(
                    f"reading {relpath} in {ns_path}: "
                    f"no answer from the setns thread within {wait}s"
                ) from None
            return future.result(0)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the requests already queued, and join it. Idempotent."""
        with self._lock:
            thread, requests = self._thread, self._queue
            self._thread = self._queue = None
        if thread is not None and requests is not None:
            requests.put(None)
            thread.join(timeout)
            if thread.is_alive():
                _log.warning("setns reader thread did not stop within %.1fs", timeout)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _serve(self, requests: queue.SimpleQueue[_Request | None]) -> None:
        try:
            home = os.open(f"{_THREAD_SELF}/ns/net", _FILE_FLAGS)
        except OSError as err:
            # Without a way back the thread stays in the last namespace it read; reads still work.
            _log.warning("setns reader cannot open its own network namespace: %s", err)
            home = -1
        away = False
        try:
            while True:
                item = requests.get()
                if item is None:
                    return
                ns_path, inode, relpath, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                data: bytes | None = None
                error: BaseException | None = None
                try:
                    away = True
                    data = self._read_in(ns_path, inode, relpath)
                except BaseException as err:  # handed to the caller, whatever it is
                    error = err
                # Home before answering, so that an idle reader is never inside another namespace.
                if away and home >= 0 and requests.empty():
                    try:
                        _setns(home)
                        away = False
                    except OSError as err:
                        _log.warning("setns reader cannot return to its namespace: %s", err)
                if error is not None:
                    future.set_exception(error)
                    del error  # no reference cycle through the traceback
                else:
                    future.set_result(data)  # type: ignore[arg-type]
        finally:
            if home >= 0:
                os.close(home)

    @staticmethod
    def _read_in(ns_path: str, inode: int, relpath: str) -> bytes:
        try:
            nsfd = os.open(ns_path, _FILE_FLAGS)
        except FileNotFoundError:
            raise NetnsGone(inode, f"{ns_path} no longer exists") from None
        try:
            found = os.fstat(nsfd).st_ino
            if found != inode:
                raise NetnsGone(inode, f"{ns_path} now refers to network namespace {found}")
            _setns(nsfd)
        finally:
            os.close(nsfd)
        return read_fd(os.open(f"{_THREAD_SELF}/{relpath}", _FILE_FLAGS))


class Netns:
    """A handle on one network namespace; a :class:`~otel_kubeskoop.procfs.FileSource`.

    ``read("net/dev")`` returns that namespace's ``net/dev``; see the module docstring for how.
    Handles are made and rebound by :class:`NetnsDiscovery`; the attributes reflect the last scan.
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
        reader: SetnsReader | None = None,
    ) -> None:
        """Open a handle reading through ``/proc/<pid>`` if ``pid`` is given, else through
        ``reader`` inside ``<netns_dir>/<name>``.

        Raises ``OSError`` if ``/proc/<pid>`` cannot be opened and :class:`NetnsGone` if the process
        is not (or no longer) in namespace ``inode``.
        """
        if pid is None and (name is None or reader is None):
            raise ValueError("a Netns without a pid needs a name and a SetnsReader")
        self._inode = inode
        self._proc_root = proc_root
        self._netns_dir = netns_dir
        self._reader = reader
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
        namespace whose representative process is gone is read through the setns thread until the
        next scan picks another process.
        """
        if relpath.startswith("/"):
            raise ValueError(f"relative path expected, got {relpath!r}")
        with self._lock:
            if self._closed:
                raise NetnsGone(self._inode, "handle closed")
            dirfd, name, reader = self._dirfd, self._name, self._reader
            if dirfd >= 0:
                # openat under the lock: a concurrent rebind cannot close dirfd (and the kernel
                # hand its number to another file) in between.
                try:
                    fd = self._open_at(dirfd, relpath)
                except NetnsGone:
                    if name is None or reader is None:
                        raise
                    dirfd = -1  # the representative is gone, the name may still lead there
        if dirfd >= 0:
            return read_fd(fd)
        if reader is None or name is None:
            raise NetnsGone(self._inode, "no process and no name to read through")
        return reader.read(os.path.join(self._netns_dir, name), self._inode, relpath)

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
        """Read through ``/proc/<pid>`` from now on, or through the setns reader if ``pid=None``."""
        new_fd = -1
        if pid is not None:
            new_fd = os.open(os.path.join(self._proc_root, str(pid)), _DIR_FLAGS)
            if not self._dir_alive(new_fd):
                os.close(new_fd)
                raise NetnsGone(self._inode, f"process {pid} is not in this namespace")
        elif self._name is None or self._reader is None:
            raise ValueError("a Netns without a pid needs a name and a SetnsReader")
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


class NetnsDiscovery:
    """Finds the node's network namespaces and keeps one :class:`Netns` handle per namespace.

    ``proc_root`` is the host's ``/proc`` (the agent runs with hostPID) or a fixture tree;
    ``netns_dir`` holds named namespaces (a missing directory means none); ``host_pid`` is a process
    in the node's own network namespace, which gets ``is_host=True`` (if its ``ns/net`` cannot be
    read, kthreadd's namespace is used: kernel threads always run in the initial one).

    :meth:`scan` costs one ``scandir`` of ``proc_root``, one ``readlink`` per pid, one ``stat`` per
    named namespace, one ``readlinkat`` per known namespace (is its representative still there?) and
    one ``open`` per new namespace. It opens no other per-pid file.
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        netns_dir: str = "/run/netns",
        host_pid: int = 1,
        reader: SetnsReader | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.netns_dir = netns_dir
        self.host_pid = host_pid
        self._reader = reader
        self._owns_reader = reader is None
        self._lock = threading.Lock()
        self._handles: dict[int, Netns] = {}
        self._gone: set[int] = set()
        self._nsfs_dev: int | None = None

    @property
    def reader(self) -> SetnsReader:
        """The reader shared by this discovery's process-less named handles (made on first use)."""
        if self._reader is None:
            self._reader = SetnsReader()
        return self._reader

    @property
    def gone_since_last_scan(self) -> set[int]:
        """Inodes of the namespaces the last :meth:`scan` no longer found (handles now closed)."""
        return set(self._gone)

    @property
    def namespaces(self) -> dict[int, Netns]:
        """The mapping returned by the last :meth:`scan`."""
        with self._lock:
            return dict(self._handles)

    def scan(self) -> dict[int, Netns]:
        """Rescan and return ``{inode: handle}`` for every namespace now present.

        Handles of namespaces that persist are the same objects as before; handles of namespaces
        that disappeared are closed and their inodes are in :attr:`gone_since_last_scan`.
        """
        with self._lock:
            pid_ns, members = self._scan_pids()
            named = self._scan_named()
            host_inode = self._host_inode(pid_ns)
            previous = self._handles
            current: dict[int, Netns] = {}
            for inode in members.keys() | named.keys():
                names = named.get(inode, [])
                handle = previous.get(inode)
                if handle is not None and handle.closed:
                    handle = None  # closed by its user: replace it with a new handle
                name = self._pick_name(handle, names)
                handle = self._refresh(inode, handle, members.get(inode, []), pid_ns, name)
                if handle is None:
                    continue
                handle._update(name, inode == host_inode)
                current[inode] = handle
            for inode, handle in previous.items():
                if current.get(inode) is not handle:
                    handle.close()
            self._gone = previous.keys() - current.keys()
            self._handles = current
            return dict(current)

    def close(self) -> None:
        """Close every handle and stop the setns reader if this discovery made it. Idempotent."""
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles = {}
            self._gone = set()
        if self._owns_reader and self._reader is not None:
            self._reader.stop()

    def __enter__(self) -> NetnsDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan_pids(self) -> tuple[dict[int, int], dict[int, list[int]]]:
        """``{pid: inode}`` and ``{inode: [pids]}`` for every pid whose ``ns/net`` is readable."""
        pid_ns: dict[int, int] = {}
        members: dict[int, list[int]] = {}
        root = self.proc_root
        try:
            entries = os.scandir(root)
        except OSError as err:
            _log.warning("cannot list %s: %s", root, err)
            return pid_ns, members
        with entries:
            for entry in entries:
                name = entry.name
                if not name.isdigit():
                    continue
                try:
                    target = os.readlink(f"{root}/{name}/ns/net")
                except OSError as err:
                    # Exited since scandir (ENOENT, ESRCH), a zombie (ENOENT), or not ours to see
                    # (EACCES: a non-dumpable process in another user namespace, a sandboxed init).
                    _log.debug("skipping pid %s: %s", name, err)
                    continue
                inode = parse_netns_link(target)
                if inode is None:
                    _log.debug("skipping pid %s: ns/net link %r is not a netns", name, target)
                    continue
                pid = int(name)
                pid_ns[pid] = inode
                members.setdefault(inode, []).append(pid)
        return pid_ns, members

    def _host_inode(self, pid_ns: dict[int, int]) -> int | None:
        """The namespace of ``host_pid``; failing that, of kthreadd.

        ``host_pid``'s link may be unreadable (a sandboxed init that is not dumpable gives EACCES
        even to root). Kernel threads always run in the initial network namespace, and kthreadd is
        pid 2 in the initial pid namespace; its ``comm`` is checked so that a ``proc_root`` of
        another pid namespace (no hostPID) never flags a pod namespace as the host.
        """
        inode = pid_ns.get(self.host_pid)
        if inode is not None or _KTHREADD_PID not in pid_ns:
            return inode
        try:
            with open(f"{self.proc_root}/{_KTHREADD_PID}/comm", "rb") as f:
                comm = f.read(64)
        except OSError:
            return None
        if comm.strip() != b"kthreadd":
            return None
        _log.debug("pid %d unreadable: host namespace taken from kthreadd", self.host_pid)
        return pid_ns[_KTHREADD_PID]

    def _scan_named(self) -> dict[int, list[str]]:
        """``{inode: [names]}`` of the nsfs files (namespace bind mounts) in ``netns_dir``."""
        named: dict[int, list[str]] = {}
        try:
            entries = os.scandir(self.netns_dir)
        except FileNotFoundError:
            return named
        except OSError as err:
            _log.warning("cannot list %s: %s", self.netns_dir, err)
            return named
        nsfs_dev = self._nsfs_device()
        with entries:
            for entry in entries:
                try:
                    st = entry.stat()
                except OSError as err:
                    _log.debug("skipping %s: %s", entry.path, err)
                    continue
                if nsfs_dev is None or st.st_dev != nsfs_dev:
                    # An empty placeholder left by a failed `ip netns add`, or no namespace at all.
                    _log.debug("skipping %s: not a namespace file", entry.path)
                    continue
                named.setdefault(st.st_ino, []).append(entry.name)
        return named

    def _nsfs_device(self) -> int | None:
        """``st_dev`` of the nsfs filesystem (one superblock for every namespace file)."""
        if self._nsfs_dev is None:
            try:
                self._nsfs_dev = os.stat(f"{_THREAD_SELF}/ns/net").st_dev
            except OSError as err:
                _log.debug("cannot stat own network namespace: %s", err)
        return self._nsfs_dev

    @staticmethod
    def _pick_name(handle: Netns | None, names: list[str]) -> str | None:
        if not names:
            return None
        if handle is not None and handle.name in names:
            return handle.name
        return min(names)

    def _refresh(
        self,
        inode: int,
        handle: Netns | None,
        pids: list[int],
        pid_ns: dict[int, int],
        name: str | None,
    ) -> Netns | None:
        """The handle for ``inode`` bound to a live representative; ``None`` if it is unreadable."""
        if handle is not None and handle.pid is not None and pid_ns.get(handle.pid) == inode:
            if handle._alive():
                return handle
        for pid in sorted(pids):
            try:
                if handle is None:
                    return Netns(
                        inode,
                        pid=pid,
                        name=name,
                        proc_root=self.proc_root,
                        netns_dir=self.netns_dir,
                        reader=self.reader,
                    )
                handle._bind(pid)
                return handle
            except (OSError, NetnsGone) as err:
                _log.debug("namespace %d: pid %d unusable: %s", inode, pid, err)
        if name is None:
            return None
        if handle is None:
            return Netns(
                inode,
                name=name,
                proc_root=self.proc_root,
                netns_dir=self.netns_dir,
                reader=self.reader,
            )
        handle._update(name, handle.is_host)
        handle._bind(None)
        return handle
