# SPDX-License-Identifier: Apache-2.0
"""Network namespace discovery: every namespace on the node, one :class:`Netns` handle each.

No OpenTelemetry and no Kubernetes imports.

:class:`NetnsDiscovery` finds the namespaces that hold a process (``readlink /proc/<pid>/ns/net``
for every pid) and the named ones under ``/run/netns`` (``ip netns add``; CNI plugins create them
too). It keeps one :class:`~otel_kubeskoop.topology.netns.Netns` handle per namespace, reused from
scan to scan, and rebinds a handle to another process when its representative goes. See
https://man7.org/linux/man-pages/man7/network_namespaces.7.html.
"""

from __future__ import annotations

import logging
import os
import threading

from otel_kubeskoop.topology.netns import Netns, NetnsGone, parse_netns_link
from otel_kubeskoop.topology.nsexec import NetnsRunner

__all__ = ["NetnsDiscovery"]

_log = logging.getLogger(__name__)

_KTHREADD_PID = 2
_THREAD_SELF_NET = "/proc/thread-self/ns/net"


class NetnsDiscovery:
    """Finds the node's network namespaces and keeps one :class:`Netns` handle per namespace.

    ``proc_root`` is the host's ``/proc`` (the agent runs with hostPID) or a fixture tree;
    ``netns_dir`` holds named namespaces (a missing directory means none); ``host_pid`` is a process
    in the node's own network namespace, which gets ``is_host=True`` (if its ``ns/net`` cannot be
    read, kthreadd's namespace is used: kernel threads always run in the initial one).

    :meth:`scan` costs one ``scandir`` of ``proc_root``, one ``readlink`` per pid, one ``stat`` per
    named namespace, one ``readlinkat`` per known namespace (is its representative still there?) and
    one ``open`` per new namespace. It opens no other per-pid file.

    ``max_namespaces`` bounds the handles kept (each holds a descriptor): namespaces past it are
    left out of the scan, the host's never, those already held before new ones, and counted in
    :attr:`left_out`, so that running out of descriptors never stops the reads of the rest.
    """

    def __init__(
        self,
        proc_root: str = "/proc",
        netns_dir: str = "/run/netns",
        host_pid: int = 1,
        runner: NetnsRunner | None = None,
        max_namespaces: int | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.max_namespaces = max_namespaces
        self.left_out = 0  # namespaces the last scan found past max_namespaces
        self.left_out_total = 0  # the same, summed over scans
        self.refused = 0  # processes whose namespace the last scan was not allowed to read
        self.netns_dir = netns_dir
        self.host_pid = host_pid
        self._runner = runner
        self._owns_runner = runner is None
        self._lock = threading.Lock()
        self._handles: dict[int, Netns] = {}
        self._gone: set[int] = set()
        self._nsfs_dev: int | None = None

    @property
    def runner(self) -> NetnsRunner:
        """The runner shared by this discovery's process-less named handles (made on first use)."""
        if self._runner is None:
            self._runner = NetnsRunner(name="kubeskoop-setns")
        return self._runner

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
            found = members.keys() | named.keys()
            # The host first, then the namespaces already held, then new ones (oldest inode first).
            order = sorted(found, key=lambda i: (i != host_inode, i not in previous, i))
            cap = len(order) if self.max_namespaces is None else max(1, self.max_namespaces)
            self.left_out = max(0, len(order) - cap)
            self.left_out_total += self.left_out
            for inode in order[:cap]:
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
        """Close every handle and stop the runner if this discovery made it. Idempotent."""
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles = {}
            self._gone = set()
        if self._owns_runner and self._runner is not None:
            self._runner.stop()

    def __enter__(self) -> NetnsDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scan_pids(self) -> tuple[dict[int, int], dict[int, list[int]]]:
        """``{pid: inode}`` and ``{inode: [pids]}`` for every pid whose ``ns/net`` is readable."""
        pid_ns: dict[int, int] = {}
        members: dict[int, list[int]] = {}
        refused = 0
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
                    # (EACCES: a non-dumpable process in another user namespace, a sandboxed init,
                    # or every process of the node when the agent lacks CAP_SYS_PTRACE).
                    _log.debug("skipping pid %s: %s", name, err)
                    refused += isinstance(err, PermissionError)
                    continue
                inode = parse_netns_link(target)
                if inode is None:
                    _log.debug("skipping pid %s: ns/net link %r is not a netns", name, target)
                    continue
                pid = int(name)
                pid_ns[pid] = inode
                members.setdefault(inode, []).append(pid)
        self.refused = refused
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
                self._nsfs_dev = os.stat(_THREAD_SELF_NET).st_dev
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
                        runner=self.runner,
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
                runner=self.runner,
            )
        handle._update(name, handle.is_host)
        handle._bind(None)
        return handle
