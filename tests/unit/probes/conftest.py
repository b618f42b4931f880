# SPDX-License-Identifier: Apache-2.0
"""Run a probe over the committed fake /proc tree (pids 1, 4242, 4343), or a copy of it."""

import shutil
from pathlib import Path

import pytest

from otel_kubeskoop.probe import Cycle, ProbeContext
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery

PROC = Path(__file__).resolve().parents[2] / "fixtures" / "proc"
MALFORMED = Path(__file__).resolve().parents[2] / "fixtures" / "proc_malformed"
HOST, POD_A, POD_B = 4026531840, 4026532281, 4026532282


class Harness:
    def __init__(self, root: Path, netns_dir: Path) -> None:
        self.root = root
        self.discovery = NetnsDiscovery(proc_root=str(root), netns_dir=str(netns_dir), host_pid=1)

    def context(self, name: str) -> ProbeContext:
        namespaces = self.discovery.scan()
        host = next(ns for ns in namespaces.values() if ns.is_host)
        return ProbeContext(name=name, proc_root=str(self.root), cycle=Cycle(namespaces=namespaces, host=host))

    def run(self, spec, ctx: ProbeContext | None = None) -> tuple[dict, ProbeContext]:
        """Start and collect once: ({(instrument name, netns, attrs): value}, ctx)."""
        ctx = ctx or self.context(spec.name)
        probe = spec.factory(spec.args(), ctx)
        probe.start()
        out = {}
        for s in probe.collect():
            key = (s.instrument.name, s.netns, s.attributes)
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
        probe.stop()
        return out, ctx

    def break_file(self, pid: int | str, relpath: str, malformed: str) -> None:
        """Replace one file of the copied tree with a committed malformed variant."""
        shutil.copyfile(MALFORMED / "net" / malformed, self.root / str(pid) / relpath)

    def remove(self, pid: int | str, relpath: str) -> None:
        (self.root / str(pid) / relpath).unlink()


@pytest.fixture
def proc(tmp_path):
    """A harness over the committed tree (read-only use)."""
    h = Harness(PROC, tmp_path / "no-netns")
    yield h
    h.discovery.close()


@pytest.fixture
def proc_copy(tmp_path):
    """A harness over a private copy of the tree, for tests that break or remove files."""
    root = tmp_path / "proc"
    shutil.copytree(PROC, root, symlinks=True)
    h = Harness(root, tmp_path / "no-netns")
    yield h
    h.discovery.close()


def snmp_section(path: Path, section: str) -> dict[str, int]:
    """An independent minimal reading of a header/value pair, to state expectations."""
    lines = [line.split() for line in path.read_text().splitlines() if line.startswith(section + ":")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))
