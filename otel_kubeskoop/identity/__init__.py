# SPDX-License-Identifier: Apache-2.0
"""Resource identity: which OTel resource (and which KubeSkoop compat labels) a sample or an event
belongs to.

- :mod:`~otel_kubeskoop.identity.keys`: the typed resource key (the node, a namespace, a pod with
  no namespace of its own);
- :mod:`~otel_kubeskoop.identity.resources`: the OTel resources built from the node's identity, a
  namespace and its pod (``service.*`` by the semconv k8s rules);
- :mod:`~otel_kubeskoop.identity.labels`: ``metrics.additionalLabels`` rendering and the compat
  labels;
- :mod:`~otel_kubeskoop.identity.directory`: :class:`ResourceDirectory`, which owns the resource
  cache, its invalidation and re-attribution. The metric pipeline, the event emitter and the compat
  endpoint are given it when they are built.
"""
