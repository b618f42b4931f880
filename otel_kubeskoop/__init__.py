# SPDX-License-Identifier: Apache-2.0
"""otel-kubeskoop: per-pod Linux network-stack telemetry as OpenTelemetry metrics and events."""

__version__ = "0.1.0"
