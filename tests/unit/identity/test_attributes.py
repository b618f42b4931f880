# SPDX-License-Identifier: Apache-2.0
"""A pod's attributes: ``service.*`` by the semantic conventions, and KubeSkoop's
``metrics.additionalLabels`` rendered for it."""

from __future__ import annotations

import dataclasses

import pytest

from otel_kubeskoop.identity.labels import render_additional_labels
from otel_kubeskoop.identity.resources import service_attributes
from otel_kubeskoop.topology.podinfo import PodInfo, pod_info_from_api
from tests.kube_apiserver import make_pod

NODE = "node-a"


def info(**kw) -> PodInfo:
    base = pod_info_from_api(make_pod("web-6d4b-x2vqp", "shop", "00000000-0000-4000-8000-000000000001", NODE, labels={}))
    return dataclasses.replace(base, **kw)


# --------------------------------------------------------------------------------------------------
# service.* (semantic conventions docs/non-normative/k8s-attributes.md)


@pytest.mark.parametrize(
    ("kw", "use_labels", "name"),
    [
        ({}, False, "web-6d4b-x2vqp"),  # bare pod: the pod name
        ({"workload_kind": "Deployment", "workload_name": "web"}, False, "web"),
        ({"workload_kind": "ReplicaSet", "workload_name": "web-6d4b"}, False, "web-6d4b"),
        ({"workload_kind": "StatefulSet", "workload_name": "db"}, False, "db"),
        ({"workload_kind": "DaemonSet", "workload_name": "agent"}, False, "agent"),
        ({"workload_kind": "CronJob", "workload_name": "nightly"}, False, "nightly"),
        ({"workload_kind": "Job", "workload_name": "migrate"}, False, "migrate"),
        ({"workload_kind": "Node", "workload_name": NODE}, False, "web-6d4b-x2vqp"),  # static pod
        ({"workload_kind": "Rollout", "workload_name": "canary"}, False, "web-6d4b-x2vqp"),
        # Well-known labels only when opted in; instance before name.
        (
            {"labels": {"app.kubernetes.io/instance": "web-eu", "app.kubernetes.io/name": "web-app"},
             "workload_kind": "Deployment", "workload_name": "web"},
            False,
            "web",
        ),
        (
            {"labels": {"app.kubernetes.io/instance": "web-eu", "app.kubernetes.io/name": "web-app"},
             "workload_kind": "Deployment", "workload_name": "web"},
            True,
            "web-eu",
        ),
        ({"labels": {"app.kubernetes.io/name": "web-app"}}, True, "web-app"),
        (
            {"labels": {"app.kubernetes.io/instance": ""}, "workload_kind": "Job", "workload_name": "j"},
            True,
            "j",
        ),
        # The annotation beats everything.
        (
            {"annotations": {"resource.opentelemetry.io/service.name": "checkout"},
             "labels": {"app.kubernetes.io/instance": "web-eu"},
             "workload_kind": "Deployment", "workload_name": "web"},
            True,
            "checkout",
        ),
        ({"annotations": {"resource.opentelemetry.io/service.name": ""}}, False, "web-6d4b-x2vqp"),
    ],
)
def test_service_name(kw, use_labels, name):
    attrs = service_attributes(info(**kw), use_labels=use_labels)
    assert attrs["service.name"] == name
    assert attrs["service.namespace"] == "shop"
    assert attrs["service.instance.id"] == "shop.web-6d4b-x2vqp"


def test_service_namespace_and_instance_id_annotations():
    p = info(
        annotations={
            "resource.opentelemetry.io/service.namespace": "payments",
            "resource.opentelemetry.io/service.instance.id": "web-eu-1",
        },
        labels={"app.kubernetes.io/part-of": "ignored"},
    )
    assert service_attributes(p) == {
        "service.namespace": "payments",
        "service.name": "web-6d4b-x2vqp",
        "service.instance.id": "web-eu-1",
    }


# --------------------------------------------------------------------------------------------------
# metrics.additionalLabels (alibaba/kubeskoop pkg/exporter/probe/legacy_test.go, commit 765e0c4)

UPSTREAM_LABELS = {"l1": "v1", "l2": "v2"}


@pytest.mark.parametrize(
    ("case", "templates", "want"),
    [
        ("common", [("n1", "alv1"), ("n2", "alv2")], ["alv1", "alv2"]),
        ("match", [("n1", "${labels:l1}"), ("n2", "alv2")], ["v1", "alv2"]),
        ("submatch", [("n1", "prefix_${labels:l1}_${labels:l2}_suffix")], ["prefix_v1_v2_suffix"]),
        ("nomatch", [("n1", "${labels:ln}")], [""]),
        ("empty", [], []),
    ],
)
def test_additional_labels_match_upstream_table(case, templates, want):
    rendered = render_additional_labels(templates, info(labels=UPSTREAM_LABELS))
    assert list(rendered.values()) == want
    assert list(rendered) == [n for n, _ in templates]


def test_additional_labels_host_namespace_and_edge_cases():
    templates = [("app", "${labels:app}"), ("n", "prefix_${labels:l1}_suffix"), ("lit", "fixed")]
    assert render_additional_labels(templates, None) == {"app": "", "n": "prefix__suffix", "lit": "fixed"}
    p = info(labels={"app": "web", "a.b/c": "x", "": "empty-key"})
    # Keys with dots and slashes; whitespace around name and expression trimmed as upstream does.
    assert render_additional_labels([(" k ", " ${labels:a.b/c} ")], p) == {"k": "x"}
    # Upstream's lazy `\${labels:(.*?)}`: stops at the first `}`; `${labels:}` looks up the empty key.
    assert render_additional_labels([("k", "${labels:app}}")], p) == {"k": "web}"}
    assert render_additional_labels([("k", "${labels:}")], p) == {"k": "empty-key"}
    assert render_additional_labels([("k", "$labels:app")], p) == {"k": "$labels:app"}
