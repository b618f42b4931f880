# SPDX-License-Identifier: Apache-2.0
"""The API stand-in the pod and Service caches are tested against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_apiserver import KubeAPIServer


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeAPIServer]:
    """A running stand-in, and the environment pointing ``load_api_client()`` at it."""
    with KubeAPIServer() as server:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server
