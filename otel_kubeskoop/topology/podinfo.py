# SPDX-License-Identifier: Apache-2.0
"""What the agent keeps of one pod (:class:`PodInfo`), parsed from the raw Pod JSON the API serves.

No OpenTelemetry and no ``kubernetes`` client imports: :func:`pod_info_from_api` takes the dict
``json.loads`` made of a list item or a watch event's object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["PodInfo", "controller_ref", "nonempty_str", "normalise_container_id", "pod_info_from_api"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_CONTAINER_ID = re.compile(r"(?:[a-z0-9][a-z0-9.+-]*://)?([0-9a-f]{64})")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the agent keeps of one pod. Built from the raw API JSON by :func:`pod_info_from_api`."""

    uid: str
    name: str
    namespace: str
    node_name: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    host_network: bool
    pod_ip: str | None
    start_time: str | None
    """``status.startTime``, RFC 3339 as the API gives it."""
    owner_kind: str | None
    """The controller owner reference (else the first one): ``ReplicaSet``, ``Job``, ``DaemonSet``..."""
    owner_name: str | None
    owner_uid: str | None
    workload_kind: str | None
    """The top owner: ``Deployment`` for a ReplicaSet owned by one, ``CronJob`` for a Job owned by one,
    else the direct owner kind (``None`` for a bare pod)."""
    workload_name: str | None
    workload_uid: str | None
    container_ids: frozenset[str]
    """64-hex ids of every container with a status (init, app, ephemeral), runtime prefix stripped."""
    resource_version: str


def _str_map(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"pod object has a malformed {where} (want a string-to-string map)")
    return MappingProxyType(dict(value)) if value else _EMPTY


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ValueError(f"pod object has a malformed {where} (want an object)")
    return value


def controller_ref(refs: Any) -> Mapping[str, Any] | None:
    """The owner reference with ``controller: true``, else the first well-formed one."""
    if not isinstance(refs, list):
        return None
    good = [r for r in refs if isinstance(r, Mapping) and isinstance(r.get("kind"), str) and r.get("name")]
    for r in good:
        if r.get("controller") is True:
            return r
    return good[0] if good else None


def pod_info_from_api(
    obj: Mapping[str, Any], *, workload: tuple[str, str, str | None] | None = None
) -> PodInfo:
    """Build a :class:`PodInfo` from a raw Pod JSON object (as listed or watched).

    ``workload`` is the resolved top owner ``(kind, name, uid)``; without it the direct owner is used.
    Raises :class:`ValueError` naming what is missing or malformed (``metadata.uid``, ``metadata.name``,
    ``metadata.namespace`` are required; labels and annotations must be string maps).
    """
    if not isinstance(obj, Mapping):
        raise ValueError("pod object is not a JSON object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ValueError("pod object is missing metadata")
    missing = [f"metadata.{k}" for k in ("uid", "name", "namespace") if not nonempty_str(meta.get(k))]
    if missing:
        raise ValueError(f"pod object is missing {', '.join(missing)}")
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")

    owner = controller_ref(meta.get("ownerReferences"))
    owner_kind = owner["kind"] if owner else None
    owner_name = str(owner["name"]) if owner else None
    owner_uid = owner.get("uid") if owner and nonempty_str(owner.get("uid")) else None
    top: tuple[str | None, str | None, str | None] = workload or (owner_kind, owner_name, owner_uid)

    cids: set[str] = set()
    for key in _STATUS_LISTS:
        statuses = status.get(key)
        if not isinstance(statuses, list):
            continue
        for st in statuses:
            cid = st.get("containerID") if isinstance(st, Mapping) else None
            if isinstance(cid, str) and (m := _CONTAINER_ID.fullmatch(cid)):
                cids.add(m.group(1))

    node = spec.get("nodeName")
    pod_ip = status.get("podIP")
    start = status.get("startTime")
    rv = meta.get("resourceVersion")
    return PodInfo(
        uid=meta["uid"],
        name=meta["name"],
        namespace=meta["namespace"],
        node_name=node if nonempty_str(node) else None,
        labels=_str_map(meta.get("labels"), "metadata.labels"),
        annotations=_str_map(meta.get("annotations"), "metadata.annotations"),
        host_network=spec.get("hostNetwork") is True,
        pod_ip=pod_ip if nonempty_str(pod_ip) else None,
        start_time=start if nonempty_str(start) else None,
        owner_kind=owner_kind,
        owner_name=owner_name,
        owner_uid=owner_uid,
        workload_kind=top[0],
        workload_name=top[1],
        workload_uid=top[2],
        container_ids=frozenset(cids),
        resource_version=rv if isinstance(rv, str) else "",
    )


def nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def normalise_container_id(cid: str) -> str | None:
    m = _CONTAINER_ID.fullmatch(cid.strip().lower())
    return m.group(1) if m else None
