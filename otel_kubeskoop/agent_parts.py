# SPDX-License-Identifier: Apache-2.0
"""What the agent's controllers see of it: the parts ``agent.py`` builds, as a protocol.

``status.py`` (the status document and the HTTP routes), ``reload.py`` and ``reconfigure.py`` work
on a running agent; they depend on this protocol, not on ``agent.py``, so the agent can build them
without an import that runs both ways.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from otel_kubeskoop.config import Config
    from otel_kubeskoop.identity.directory import ResourceDirectory
    from otel_kubeskoop.probe import Cycle
    from otel_kubeskoop.runtime import ProbeRuntime
    from otel_kubeskoop.telemetry.compat import CompatEndpoint
    from otel_kubeskoop.telemetry.events import EventEmitter
    from otel_kubeskoop.telemetry.pipeline import MetricPipeline
    from otel_kubeskoop.telemetry.sender import MetricSender
    from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery
    from otel_kubeskoop.topology.pods import PodCache
    from otel_kubeskoop.topology.services import ServiceCache


class Reloading(Protocol):
    """The reloader as the status document and ``POST /-/reload`` see it."""

    path: str | None

    def status(self) -> dict[str, Any]: ...

    def reload_and_wait(self, trigger: str) -> dict[str, Any]: ...


class Publishing(Protocol):
    def publish(self, agent: Any) -> None: ...


class AgentParts(Protocol):
    config: Config
    runtime: ProbeRuntime
    directory: ResourceDirectory
    discovery: NetnsDiscovery
    fd_limit: int
    pods: PodCache
    services: ServiceCache
    events: EventEmitter
    pipeline: MetricPipeline | None
    compat: CompatEndpoint | None
    sender: MetricSender | None
    snapshot: Cycle
    lock: threading.RLock
    board: Publishing
    reloader: Reloading
    cycles: int
    loop_started: float | None
    last_cycle_end: float | None
    last_cycle_seconds: float | None

    @property
    def export_failures(self) -> int: ...

    def overflow(self) -> dict[str, int]: ...

    def running(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...
