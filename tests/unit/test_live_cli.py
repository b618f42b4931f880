# SPDX-License-Identifier: Apache-2.0
"""``watch`` and ``top`` with no agent serving the stream: they say so and exit 1."""

from __future__ import annotations

import subprocess

import pytest

from tests.agentproc import CLI


@pytest.mark.parametrize("command", ["watch", "top"])
def test_without_an_agent_they_say_so_and_exit_1(tmp_path, command):
    path = tmp_path / "none.sock"
    proc = subprocess.run([CLI, command, "--socket", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc
    assert f"error: no agent serves its event stream at {path} (No such file or directory)" in proc.stderr
    assert proc.stdout == ""
