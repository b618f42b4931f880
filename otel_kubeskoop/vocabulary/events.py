# SPDX-License-Identifier: Apache-2.0
"""What an event is: ``event_name``, upstream KubeSkoop type, the attribute keys it may carry, and
a description. Each probe declares its events in its own module (``EVENTS``) and builds
:class:`~otel_kubeskoop.probe.Event` from them; the table of every event is derived from the
registry (``probes/__init__.py``).

Names are ``kubeskoop.<probe>.<type>``; the upstream type string (``TCPRESET_NOSOCK``...) rides
along as the ``kubeskoop.event.type`` attribute (``telemetry/events.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    upstream_type: str
    description: str
    attributes: tuple[str, ...] = ()

    @property
    def probe(self) -> str:
        return self.name.split(".")[1]
