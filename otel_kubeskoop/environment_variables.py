# SPDX-License-Identifier: Apache-2.0
"""Every environment variable the agent reads, one constant each.

Our own variables use the ``KUBESKOOP_`` prefix; the standard ``OTEL_*`` variables keep their
standard meaning and apply where the config file is silent.
"""

NODE_NAME = "NODE_NAME"
"""The Kubernetes node name (downward API ``spec.nodeName``); config ``nodeName`` wins."""

INSPECTOR_NODENAME = "INSPECTOR_NODENAME"
"""Upstream KubeSkoop's name for the node name, accepted as an alias of ``NODE_NAME``."""

KUBESKOOP_CONFIG = "KUBESKOOP_CONFIG"
"""Config file path used by ``otel-kubeskoop run`` when ``-c`` is not given."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""Read by the agent (the SDK exporter classes do not): ``http/protobuf`` (default) or ``grpc``."""
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
OTEL_EXPORTER_OTLP_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
"""Collection and export interval in milliseconds when the config has no ``otlp.interval``."""
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true`` turns OTLP export off; the agent still collects and serves its HTTP endpoints."""
OTEL_EXPORTER_OTLP_PREFIX = "OTEL_EXPORTER_OTLP_"
"""The exporters' variables, ``OTEL_EXPORTER_OTLP_[METRICS_|LOGS_]<OPTION>``: the agent checks
``ENDPOINT``, ``HEADERS``, ``COMPRESSION``, ``CERTIFICATE``, ``CLIENT_KEY`` and
``CLIENT_CERTIFICATE`` before start, and reads ``TIMEOUT`` itself, in milliseconds as the
specification says (the Python SDK would read seconds)."""
