# SPDX-License-Identifier: Apache-2.0
"""The floor of a probe set's datapath cost: an empty BPF program on every hook the set runs on.

An empty program still pays what the kernel charges for running any program at a hook (the
tracepoint's dispatch, the BPF trampoline or TC classifier call, the program's entry and exit),
so a probe set's cost can only come down towards this floor, never below it. bench/datapath.py
--floor measures it beside the set, pair by pair.

The hooks are read from the running set: the BTF tracepoints its probes' programs are attached
to (``chosen`` of each probe's object), and the TC directions of the given interfaces that carry
a filter once the set runs. The empty programs are compiled here with clang (bench only: the
agent never compiles) and loaded with libbpf; TC ones with iproute2's ``tc``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.attach import AttachKind

_SEC = '#define SEC(name) __attribute__((section(name), used))\n'
_TRACE = 'SEC("tp_btf/{target}") int floor_{n}(unsigned long long *ctx) {{ return 0; }}\n'
# TC_ACT_UNSPEC (-1): the verdict bpf/flow.bpf.c gives, so the packet's path after it is the same
_TC = 'SEC("tc") int floor_tc(void *skb) { return -1; }\n'
_LICENSE = 'char LICENSE[] SEC("license") = "GPL";\n'
TC_PRIORITY = 0x4B46  # a pair of its own, apart from any probe's filters


def traced_hooks(runtime: Any) -> list[str]:
    """The BTF tracepoints the runtime's BPF probes are attached to."""
    targets = set()
    for run in runtime.runs:
        handle = getattr(run.probe, "bpf", None)
        for point in (handle.chosen if handle is not None else {}).values():
            if point.kind is not AttachKind.TP_BTF:
                raise SystemExit(f"--floor: {run.name} runs on {point}, not a BTF tracepoint; "
                                 "only those have an empty counterpart here")
            targets.add(point.target)
    return sorted(targets)


def tc_hooks(interfaces: Iterable[tuple[Any, str]]) -> list[tuple[Any, str, str]]:
    """(namespace, interface, direction) of each TC hook on the interfaces with a filter."""
    out = []
    for ns, dev in interfaces:
        for direction in ("ingress", "egress"):
            shown = ns.run("tc", "-j", "filter", "show", "dev", dev, direction, check=False).stdout
            if shown.strip() and json.loads(shown):
                out.append((ns, dev, direction))
    return out


def _compile(source: str, out: Path) -> Path:
    src = out.with_suffix(".c")
    src.write_text(_SEC + source + _LICENSE)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    return out


@contextmanager
def _traced(path: Path) -> Iterator[None]:
    so = libbpf.lib()
    obj = libbpf.check_ptr(so.bpf_object__open_file(str(path).encode(), None), f"open {path}")
    links = []
    try:
        libbpf.check_int(so.bpf_object__load(obj), f"load {path}")
        prog = so.bpf_object__next_program(obj, None)
        while prog:
            links.append(libbpf.check_ptr(so.bpf_program__attach(prog), f"attach {so.bpf_program__name(prog)}"))
            prog = so.bpf_object__next_program(obj, prog)
        yield
    finally:
        for link in links:
            so.bpf_link__destroy(link)
        so.bpf_object__close(obj)


@contextmanager
def _tc(path: Path, hooks: list[tuple[Any, str, str]]) -> Iterator[None]:
    added = []
    try:
        for ns, dev, direction in hooks:
            ns.run("tc", "qdisc", "replace", "dev", dev, "clsact", check=True)
            ns.run("tc", "filter", "add", "dev", dev, direction, "prio", str(TC_PRIORITY), "bpf", "da",
                   "obj", str(path), "sec", "tc", check=True)
            added.append((ns, dev, direction))
        yield
    finally:
        for ns, dev, direction in added:
            ns.run("tc", "filter", "del", "dev", dev, direction, "prio", str(TC_PRIORITY), check=False)


class Floor:
    """Empty programs on ``traced`` BTF tracepoints and ``tc`` hooks, built once; each ``with``
    of :meth:`attached` loads and attaches them, and removes them on exit."""

    def __init__(self, traced: list[str], tc: list[tuple[Any, str, str]]) -> None:
        self.traced, self.tc = traced, tc
        self._dir = tempfile.TemporaryDirectory(prefix="okp-floor-")
        work = Path(self._dir.name)
        self._traced_obj = _compile("".join(_TRACE.format(target=t, n=n) for n, t in enumerate(traced)),
                                    work / "traced.o") if traced else None
        self._tc_obj = _compile(_TC, work / "tc.o") if tc else None

    @contextmanager
    def attached(self) -> Iterator[None]:
        with ExitStack() as stack:
            if self._traced_obj is not None:
                stack.enter_context(_traced(self._traced_obj))
            if self._tc_obj is not None:
                stack.enter_context(_tc(self._tc_obj, self.tc))
            yield

    def close(self) -> None:
        self._dir.cleanup()

    def describe(self) -> dict[str, list[str]]:
        return {"tp_btf": self.traced, "tc": [f"{ns.name}/{dev} {d}" for ns, dev, d in self.tc]}
