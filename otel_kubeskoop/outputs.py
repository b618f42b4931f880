# SPDX-License-Identifier: Apache-2.0
"""Where the agent's data goes, from the config: the OTLP metric exporter, and for events the OTLP
log exporters (the OTLP endpoint, upstream's ``loki`` sink) and the JSON line sinks."""

from __future__ import annotations

from typing import Any

from otel_kubeskoop.config import Config
from otel_kubeskoop.telemetry import exporters
from otel_kubeskoop.telemetry.events import LineSink, line_sink


class StartError(OSError):
    """Something the config names cannot be had at start (an address, a file); the message names
    the file, the key and the value."""


def metric_exporter(config: Config) -> Any:
    """The OTLP metric exporter, or None when no endpoint is configured."""
    otlp = config.otlp
    return exporters.metric_exporter(otlp.protocol, otlp.endpoint, otlp.headers, otlp.timeout) if otlp.enabled else None


def event_outputs(config: Config, log_exporters: list[Any] | None = None) -> tuple[list[Any], list[LineSink]]:
    """The log exporters (``log_exporters`` in place of the OTLP one when given) and line sinks."""
    otlp = config.otlp
    if log_exporters is None:
        log_exporters = [exporters.log_exporter(otlp.protocol, otlp.endpoint, otlp.headers, otlp.logs_timeout)] if otlp.enabled else []
    log_exporters = list(log_exporters)
    line_sinks: list[LineSink] = []
    for i, sink in enumerate(config.sinks):
        if sink.name == "loki" and sink.addr:
            log_exporters.append(exporters.loki_log_exporter(sink.addr))
            continue
        try:
            line_sinks.append(line_sink(sink.name, sink.path))
        except OSError as exc:
            raise StartError(f"{config.source}: event.sinks[{i}].args.path: cannot open {sink.path!r}: "
                             f"{exc.strerror or exc}") from None
    if not config.sinks and not otlp.enabled:
        line_sinks.append(line_sink("stdout"))  # one machine, no backend: show events at once
    return log_exporters, line_sinks
