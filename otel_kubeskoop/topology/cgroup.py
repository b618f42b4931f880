# SPDX-License-Identifier: Apache-2.0
"""Kubernetes pod UID and container ID of a process, from ``/proc/<pid>/cgroup``.

No OpenTelemetry and no Kubernetes imports.

File format (``proc_cgroup_show`` in ``kernel/cgroup/cgroup.c``; cgroups(7)): one line per
hierarchy, ``hierarchy-ID:controller-list:cgroup-path``. cgroup v1 lines have a non-zero ID and a
controller list (``4:memory:/...``, ``1:name=systemd:/...``); the v2 (unified) line is ``0::/...``.
A hybrid host has both. The path may itself contain ``:`` (containerd's colon form below), so a
line is split at its first two colons only. On v2 the kernel appends `` (deleted)`` when the
cgroup of a zombie was removed.

A path is relative to the *reader's* cgroup namespace root: an agent in a container with its own
cgroup namespace sees other pods as ``/../../kubepods-besteffort.slice/...`` (cgroup_namespaces(7):
"../ entries for each ancestor level"). containerd gives every non-privileged container on cgroup
v2 its own cgroup namespace (CRI plugin, ``container_create_linux.go``: "cgroupns is not used when
running in cgroup v1 mode or in privileged"), so relative paths are handled as well as absolute
ones.

How the kubelet names pod cgroups (kubernetes ``pkg/kubelet/cm``: ``cgroup_manager_linux.go``,
``pod_container_manager_linux.go``, ``qos_container_manager_linux.go``): the abstract name is
``[<cgroup-root parts>..., "kubepods", <qos>, "pod" + <uid>]``, the QoS part left out for
Guaranteed pods.

- cgroupfs driver: the parts joined by ``/``: ``/kubepods/burstable/pod<uid>``,
  ``/kubepods/pod<uid>``; with ``--cgroup-root=/kubelet`` (kind on cgroup v1):
  ``/kubelet/kubepods/besteffort/pod<uid>``.
- systemd driver (``CgroupName.ToSystemd``): ``-`` in a part becomes ``_`` ("systemd treats - as
  a step in the hierarchy"), the parts are joined by ``-`` into one slice name and expanded:
  ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice``.
  A cgroup root becomes part of every slice name; kind on cgroup v2 has
  ``/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort-pod<uid>.slice``
  (containerd/nri PR #227, log from a kind node).

Under the pod cgroup the runtime makes one cgroup per container (the pause/sandbox one too):

- containerd: ``<64 hex>`` (cgroupfs), ``cri-containerd-<id>.scope`` (systemd). When the kubelet
  uses systemd but runc its cgroupfs manager, runc's ``slice:prefix:name`` cgroupsPath is taken
  literally under containerd's own cgroup:
  ``/system.slice/containerd.service/kubepods-burstable-pod<uid>.slice:cri-containerd:<id>``
  (containerd/cri PR #290: "runc systemd cgroup path format is slice:prefix:name"; Pixie
  ``src/shared/metadata/cgroup_path_resolver_test.cc`` ``BareMetalK8s_1_21``;
  DataDog/datadog-agent ``pkg/util/cgroups/pid_mapper_test.go``; coroot-node-agent
  ``cgroup/cgroup_test.go``). k3s embeds containerd with the cgroupfs driver
  (``0::/kubepods/burstable/pod<uid>/<id>``, rancher/k3k PR #792); the k3s process itself goes to
  ``/k3s`` (k3s ``pkg/cgroups/cgroups_linux.go``), which is not a pod.
- CRI-O: ``crio-<id>.scope`` (systemd), ``crio-<id>`` (cgroupfs); crun may add a ``container``
  sub-cgroup (``crio-<id>.scope/container``, coroot-node-agent tests). ``crio-conmon-<id>.scope``
  is CRI-O's per-container monitor when ``conmon_cgroup = "pod"``: it is in the pod's cgroup but
  it is *not* the container and it stays in the host's namespaces (it starts the OCI runtime, it
  does not join the container). It yields the pod with ``container_id=None`` and
  ``runtime="cri-o"`` (coroot-node-agent ``cgroup/cgroup.go`` likewise gives it no container).
- Docker (dockershim / cri-dockerd): ``docker-<id>.scope`` (systemd), ``<64 hex>`` (cgroupfs;
  indistinguishable from containerd's, so the runtime is ``None``).

Nested clusters (kind, minikube, k3d) put the whole tree under the node container's cgroup:
``/docker/<node id>/kubelet/kubepods/...`` (datadog-agent ``pid_mapper_test.go``, "docker in
docker"), ``/docker/<node id>/kubepods.slice/...`` (kubernetes/minikube#11280). The node
container's ID is never taken for the container: only the segment right below the pod's is. When a
path holds more than one pod (a cluster running inside a pod), the innermost pod is returned, the
one whose kubelet made the process's cgroup.

Static pods: the UID is the 32-hex-digit config hash
(``kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice``, netdata/netdata#4868) and is
returned as is; the mirror pod in the API has another ``metadata.uid`` and carries this one in its
``kubernetes.io/config.mirror`` annotation.

A result without ``container_id`` (a process directly in the pod cgroup, a conmon, a runtime
helper such as a Kata VMM) says where the process is accounted, not which network namespace it is
in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from otel_kubeskoop.procfs import FileSource, ParseError

__all__ = [
    "QOS_BESTEFFORT",
    "QOS_BURSTABLE",
    "QOS_GUARANTEED",
    "RELPATH",
    "RUNTIME_CONTAINERD",
    "RUNTIME_CRIO",
    "RUNTIME_DOCKER",
    "CgroupPod",
    "parse_cgroup_path",
    "parse_proc_cgroup",
    "read_pod_of",
]

RELPATH = "cgroup"

RUNTIME_CONTAINERD = "containerd"
RUNTIME_CRIO = "cri-o"
RUNTIME_DOCKER = "docker"

QOS_BESTEFFORT = "besteffort"
QOS_BURSTABLE = "burstable"
QOS_GUARANTEED = "guaranteed"

# Pod UIDs: API-server UUIDs (lowercase, dashed) or a static pod's 32-hex-digit config hash.
_UID = r"[0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12}|[0-9a-f]{32}"

# cgroupfs: the pod's own path segment; its parent segment says the QoS class.
_CGROUPFS_POD = re.compile(rf"pod({_UID})")

# systemd: the pod slice names its parents (and any cgroup root such as kind's "kubelet-"), so no
# parent check is needed. Matched against the segment up to its first ':' (containerd's colon form).
_SYSTEMD_POD = re.compile(rf"(?:[^/]*-)?kubepods-(?:(besteffort|burstable)-)?pod({_UID})\.slice")

# The container segment right below the pod. Group 1 is the runtime prefix, if any.
_CONTAINER = re.compile(r"(?:(cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?")
_CONMON = re.compile(r"crio-conmon-[0-9a-f]{64}(?:\.scope)?")
_ID = re.compile(r"[0-9a-f]{64}")

# Runtime prefixes in scope names and in runc's "slice:prefix:name" form.
_RUNTIME_OF_PREFIX = MappingProxyType(
    {"cri-containerd": RUNTIME_CONTAINERD, "crio": RUNTIME_CRIO, "docker": RUNTIME_DOCKER}
)

# cgroupfs parent segment of a pod segment -> QoS class. ".." is a path relative to the reader's
# cgroup namespace that climbs past the QoS level: the pod is there, its class is not.
_CGROUPFS_PARENT_QOS = MappingProxyType(
    {
        "kubepods": QOS_GUARANTEED,
        "besteffort": QOS_BESTEFFORT,
        "burstable": QOS_BURSTABLE,
        "..": None,
    }
)

_DELETED = " (deleted)"

# v1 controllers to prefer when several v1 lines name a pod (the ones the kubelet always sets up).
_V1_PREFERENCE = ("memory", "cpu", "cpuacct", "pids", "name=systemd")


@dataclass(frozen=True, slots=True)
class CgroupPod:
    """The pod (and container) a cgroup path belongs to.

    ``pod_uid`` is in the API's form (dashes, also when the systemd driver wrote underscores).
    ``container_id`` is the runtime's 64-hex-digit ID without prefix or suffix, or ``None`` when the
    process sits in the pod's cgroup but not in a container's (see the module docstring, including
    CRI-O's conmon). ``runtime`` is ``"containerd"``, ``"cri-o"`` or ``"docker"`` when the path
    names it. ``qos`` is ``"besteffort"``, ``"burstable"`` or ``"guaranteed"`` when the path tells.
    """

    pod_uid: str
    container_id: str | None
    runtime: str | None
    qos: str | None


def _container_of(segment: str) -> tuple[str | None, str | None]:
    """(container ID, runtime) of the segment right below a pod's cgroup."""
    m = _CONTAINER.fullmatch(segment)
    if m is not None:
        prefix = m.group(1)
        return m.group(2), (_RUNTIME_OF_PREFIX[prefix] if prefix else None)
    if _CONMON.fullmatch(segment) is not None:
        return None, RUNTIME_CRIO
    return None, None


def _colon_container_of(rest: str) -> tuple[str | None, str | None]:
    """(container ID, runtime) from the ``prefix:name`` after a pod slice's first ``:``."""
    prefix, sep, name = rest.partition(":")
    if not sep or _ID.fullmatch(name) is None:
        return None, None
    return name, _RUNTIME_OF_PREFIX.get(prefix)


def parse_cgroup_path(path: str) -> CgroupPod | None:
    """Return the pod a cgroup path (third field of a ``/proc/<pid>/cgroup`` line) belongs to.

    Returns ``None`` for anything that is not inside a pod's cgroup: host services
    (``/system.slice/sshd.service``), user sessions, ``/``, ``/init.scope``, the QoS-level slices,
    plain Docker containers. See the module docstring for the shapes recognised and their sources.
    """
    if "pod" not in path:
        return None
    if path.endswith(_DELETED):
        path = path[: -len(_DELETED)]
    segments = path.split("/")
    # From the leaf up, so that the innermost pod wins and a nested node's ID is never taken.
    for i in range(len(segments) - 1, -1, -1):
        segment = segments[i]
        if "pod" not in segment:
            continue
        head, colon, rest = segment.partition(":")
        m = _SYSTEMD_POD.fullmatch(head)
        if m is not None:
            qos = m.group(1) or QOS_GUARANTEED
            uid = m.group(2).replace("_", "-")
            if colon:
                container_id, runtime = _colon_container_of(rest)
            elif i + 1 < len(segments):
                container_id, runtime = _container_of(segments[i + 1])
            else:
                container_id, runtime = None, None
            return CgroupPod(uid, container_id, runtime, qos)
        if colon or i == 0:
            continue
        parent = segments[i - 1]
        if parent not in _CGROUPFS_PARENT_QOS:
            continue
        m = _CGROUPFS_POD.fullmatch(segment)
        if m is None:
            continue
        uid = m.group(1).replace("_", "-")
        if i + 1 < len(segments):
            container_id, runtime = _container_of(segments[i + 1])
        else:
            container_id, runtime = None, None
        return CgroupPod(uid, container_id, runtime, _CGROUPFS_PARENT_QOS[parent])
    return None


def _v1_rank(controllers: str) -> int:
    ranks = [_V1_PREFERENCE.index(c) for c in controllers.split(",") if c in _V1_PREFERENCE]
    return min(ranks) if ranks else len(_V1_PREFERENCE)


def parse_proc_cgroup(data: bytes, path: str = RELPATH) -> CgroupPod | None:
    """Parse a whole ``/proc/<pid>/cgroup`` file into the pod the process belongs to, or ``None``.

    The unified (``0::``) line wins when it names a pod; a v1 line is used when it does not (on a
    hybrid host runc's v1 manager may leave the unified path at ``containerd.service``) or when it
    adds the container ID of the same pod. Among v1 lines, one with a container ID is preferred,
    then the controllers the kubelet always manages (memory, cpu, pids, name=systemd), then file
    order. Every line is checked even after a match.

    Raises :class:`ParseError` (naming ``path`` and the 1-based line) for a line that is not three
    ``:``-separated fields or whose hierarchy ID is not a number, and for an empty file (the kernel
    never writes one for a live process).
    """
    text = data.decode("utf-8", "replace")
    unified: CgroupPod | None = None
    best_v1: tuple[bool, int, int, CgroupPod] | None = None
    seen: dict[str, CgroupPod | None] = {}
    lines = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(":", 2)
        if len(fields) != 3:
            message = f"expected 'hierarchy-ID:controllers:path', got {len(fields)} field(s)"
            raise ParseError(path, message, lineno)
        hierarchy, controllers, cgroup_path = fields
        if not hierarchy.isdecimal():
            raise ParseError(path, f"hierarchy ID {hierarchy!r} is not a number", lineno)
        lines += 1
        if cgroup_path in seen:
            pod = seen[cgroup_path]
        else:
            pod = seen[cgroup_path] = parse_cgroup_path(cgroup_path)
        if pod is None:
            continue
        if hierarchy == "0":
            if unified is None:
                unified = pod
            continue
        key = (pod.container_id is None, _v1_rank(controllers), lineno, pod)
        if best_v1 is None or key[:3] < best_v1[:3]:
            best_v1 = key
    if lines == 0:
        raise ParseError(path, "empty file")
    v1 = best_v1[3] if best_v1 is not None else None
    if unified is None:
        return v1
    if (
        unified.container_id is None
        and v1 is not None
        and v1.container_id is not None
        and v1.pod_uid == unified.pod_uid
    ):
        return v1
    return unified


def read_pod_of(source: FileSource) -> CgroupPod | None:
    """Read and parse ``/proc/<pid>/cgroup`` through ``source`` (a ``/proc/<pid>`` directory or a
    :class:`~otel_kubeskoop.topology.netns.Netns` handle).

    See https://man7.org/linux/man-pages/man7/cgroups.7.html (``/proc/[pid]/cgroup``) and
    https://man7.org/linux/man-pages/man7/cgroup_namespaces.7.html. ``FileNotFoundError`` passes
    through unwrapped.
    """
    return parse_proc_cgroup(source.read(RELPATH), source.path(RELPATH))
