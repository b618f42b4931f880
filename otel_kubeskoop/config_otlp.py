# SPDX-License-Identifier: Apache-2.0
"""The OTLP settings from the config's ``otlp`` section and the standard ``OTEL_EXPORTER_OTLP_*``
variables, checked before anything starts.

The SDK reads these variables itself and, when one is malformed, logs a warning and goes on with a
default (a warning the agent's log level hides) or fails at every export; so each one the SDK would
read is checked here, and a bad value is a config error naming the variable and the reason.

Timeouts follow the specification's unit, milliseconds
(https://opentelemetry.io/docs/specs/otel/protocol/exporter/#configuration-options); the Python SDK
reads them as seconds, so the agent resolves them and hands the exporters seconds explicitly.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

from otel_kubeskoop import environment_variables as env

SIGNALS = ("METRICS", "LOGS")
DEFAULT_TIMEOUT_S = 10.0  # the specification's default, 10000 ms
COMPRESSIONS = ("gzip", "deflate", "none")
Problem = tuple[str, str]


def variables(option: str, signal: str) -> tuple[str, str]:
    """The per-signal variable, then the general one, for ``option`` (e.g. ``TIMEOUT``)."""
    return f"{env.OTEL_EXPORTER_OTLP_PREFIX}{signal}_{option}", f"{env.OTEL_EXPORTER_OTLP_PREFIX}{option}"


def _first(environ: Mapping[str, str], option: str, signal: str) -> tuple[str, str] | None:
    for name in variables(option, signal):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def endpoint_problem(value: str) -> str | None:
    """Why ``value`` is not an OTLP endpoint URL, or None."""
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return ("not a URL with scheme http or https" + (f" (scheme {parts.scheme!r})" if parts.scheme else "")
                + ", e.g. http://collector:4318")
    if not parts.hostname:
        return "the URL names no host, e.g. http://collector:4318"
    if port == 0:
        return "port 0 is not a port to send to"
    return None


def headers_problem(value: str) -> str | None:
    """Why ``value`` is not a W3C-baggage-style ``key=value,key=value`` list, or None."""
    for item in value.split(","):
        key, sep, _ = item.partition("=")
        if not item.strip():
            continue
        if not sep or not urllib.parse.unquote(key).strip():
            return f"expected 'key=value' pairs separated by commas, got {item.strip()!r}"
    return None


def timeout_s(environ: Mapping[str, str], signal: str) -> tuple[float, list[Problem]]:
    """The export timeout for ``signal`` in seconds, from the variables' milliseconds."""
    found = _first(environ, "TIMEOUT", signal)
    if found is None:
        return DEFAULT_TIMEOUT_S, []
    name, raw = found
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not ms > 0 or ms != ms or ms == float("inf"):
        return DEFAULT_TIMEOUT_S, [("", f"environment {name}={raw!r}: expected a positive number of milliseconds")]
    return ms / 1000.0, []


def environment_problems(environ: Mapping[str, str], file_endpoint: str | None) -> list[Problem]:
    """Every malformed ``OTEL_EXPORTER_OTLP_*`` value the exporters would read."""
    problems: list[Problem] = []
    for signal in SIGNALS:
        for option, check in (("ENDPOINT", endpoint_problem), ("HEADERS", headers_problem)):
            if option == "ENDPOINT" and file_endpoint:
                continue  # the file's endpoint is used, checked with the file
            for name in variables(option, signal):
                value = environ.get(name, "").strip()
                why = check(value) if value else None
                if why:
                    problems.append(("", f"environment {name}={value!r}: {why}"))
        for name in variables("COMPRESSION", signal):
            value = environ.get(name, "").strip()
            if value and value.lower() not in COMPRESSIONS:
                problems.append(("", f"environment {name}={value!r}: expected one of {', '.join(COMPRESSIONS)}"))
        for option in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
            for name in variables(option, signal):
                value = environ.get(name, "").strip()
                if value and not os.access(value, os.R_OK):
                    why = "no such file" if not os.path.exists(value) else "not readable"
                    problems.append(("", f"environment {name}={value!r}: {why}"))
    return sorted(set(problems), key=problems.index)
