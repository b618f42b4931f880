# SPDX-License-Identifier: Apache-2.0
"""The committed docs are what the code generates (`make docs` rewrites them)."""

from pathlib import Path

import pytest

from otel_kubeskoop.docs import DOCS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(DOCS))
def test_generated_docs_are_current(name):
    assert (ROOT / "docs" / name).read_text() == DOCS[name](), f"docs/{name} is stale: run `make docs`"
