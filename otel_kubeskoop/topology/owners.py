# SPDX-License-Identifier: Apache-2.0
"""Owner workloads: the Deployment above a pod's ReplicaSet, the CronJob above its Job.

The semantic conventions want ``k8s.deployment.name`` and ``k8s.cronjob.name``, which a pod's own
owner reference does not name: a pod owned by a ReplicaSet gets the ReplicaSet's Deployment owner
(``GET /apis/apps/v1/namespaces/<ns>/replicasets/<name>``), a pod owned by a Job gets the Job's
CronJob owner (``GET /apis/batch/v1/...``). Lookups are cached (LRU by kind/namespace/name/uid);
403 and 404 fall back to the direct owner for good; a timeout or server error falls back for now,
pauses all lookups for ``retry_seconds`` (so an unresponsive API cannot stall the pod cache's
watch loop once per pod), and the pod is listed in :attr:`OwnerResolver.unresolved` for the cache
to resolve again later.

See https://github.com/open-telemetry/semantic-conventions/blob/main/docs/non-normative/k8s-attributes.md.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias
from urllib.parse import quote

from otel_kubeskoop.topology.kubeapi import describe
from otel_kubeskoop.topology.podinfo import PodInfo, controller_ref, nonempty_str

log = logging.getLogger(__name__)

Workload: TypeAlias = tuple[str, str, str | None]  # (kind, name, uid)
# (path, request timeout) -> the JSON object the API answered; raises what the GET raised
Fetch = Callable[[str, Any], Any]


class OwnerResolver:
    """Resolves pods' top workloads through ``fetch``; used from the pod cache's thread only."""

    def __init__(self, fetch: Fetch, stopping: Callable[[], bool], *, timeout: float = 2.0,
                 retry_seconds: float = 30.0, cache_size: int = 4096) -> None:
        self._fetch = fetch
        self._stopping = stopping
        self._timeout = timeout
        self._retry = retry_seconds
        self._cache_size = cache_size
        # (kind, namespace, name, uid) -> (top workload or None, expiry; 0.0: never)
        self._cache: collections.OrderedDict[tuple[str, str, str, str | None], tuple[Workload | None, float]] = (
            collections.OrderedDict()
        )
        self._blocked_until = 0.0
        self._forbidden_logged: set[str] = set()
        self.unresolved: set[str] = set()  # uids whose owner lookup failed transiently
        self.lookups = 0

    def paused(self) -> bool:
        """Lookups are paused after a timeout or server error."""
        return time.monotonic() < self._blocked_until

    def resolve(self, info: PodInfo, previous: PodInfo | None) -> PodInfo:
        """``info`` with its top workload; ``previous`` (the same pod as cached) saves a lookup
        when its owner did not change."""
        kind = info.owner_kind
        if kind not in ("ReplicaSet", "Job") or not info.owner_name:
            return info
        top: tuple[str | None, str | None, str | None] | None
        if (
            previous is not None
            and previous.owner_uid == info.owner_uid
            and previous.owner_name == info.owner_name
            and info.uid not in self.unresolved
        ):
            top = (previous.workload_kind, previous.workload_name, previous.workload_uid)
        else:
            top = self._lookup(kind, info.namespace, info.owner_name, info.owner_uid, info.uid)
        if top is None or top[0] is None:
            return info
        return dataclasses.replace(info, workload_kind=top[0], workload_name=top[1], workload_uid=top[2])

    def _lookup(self, kind: str, namespace: str, name: str, uid: str | None, pod_uid: str) -> Workload | None:
        """The Deployment/CronJob above a ReplicaSet/Job, or ``None`` to use the direct owner."""
        key = (kind, namespace, name, uid)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and (cached[1] == 0.0 or cached[1] > now):
            self._cache.move_to_end(key)
            return cached[0]
        if now < self._blocked_until:
            self.unresolved.add(pod_uid)
            return None
        want = "Deployment" if kind == "ReplicaSet" else "CronJob"
        self.lookups += 1
        try:
            group = "apps/v1/namespaces/{}/replicasets" if kind == "ReplicaSet" else "batch/v1/namespaces/{}/jobs"
            path = f"/apis/{group.format(quote(namespace, safe=''))}/{quote(name, safe='')}"
            obj = self._fetch(path, (self._timeout, self._timeout))
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status in (403, 404):
                # Final: the object is gone, or we may not read it (RBAC). Use the direct owner.
                if status == 403 and kind not in self._forbidden_logged:
                    self._forbidden_logged.add(kind)
                    log.warning("may not read %ss (%s); pods keep their %s as workload", kind, describe(exc), kind)
                self._remember(key, None, 0.0)
                self.unresolved.discard(pod_uid)
                return None
            if self._stopping():
                return None
            log.warning("%s %s/%s lookup failed (%s); owner lookups pause for %.0f s",
                        kind, namespace, name, describe(exc), self._retry)
            self._blocked_until = time.monotonic() + self._retry
            self.unresolved.add(pod_uid)
            return None
        self.unresolved.discard(pod_uid)
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        if not isinstance(meta, Mapping) or (uid and meta.get("uid") != uid):
            # A different object of the same name (deleted and recreated): not our owner.
            self._remember(key, None, now + self._retry)
            return None
        ref = controller_ref(meta.get("ownerReferences"))
        top: Workload | None = None
        if ref is not None and ref.get("kind") == want:
            top = (want, str(ref["name"]), ref.get("uid") if nonempty_str(ref.get("uid")) else None)
        self._remember(key, top, 0.0)
        return top

    def _remember(self, key: tuple[str, str, str, str | None], value: Workload | None, expires: float) -> None:
        self._cache[key] = (value, expires)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
