# SPDX-License-Identifier: Apache-2.0
"""Recursion misses: runs the kernel skipped because the program was already running on the CPU.

A program on the ``bpf_trace_printk`` BTF tracepoint that itself calls ``bpf_printk()`` fires that
tracepoint from inside its own run; the kernel skips the nested run and counts it
(``__bpf_trace_run()`` in kernel/trace/bpf_trace.c). A second program, on ``tcp_receive_reset``,
starts each chain, so a refused connect to loopback is one outer run and one skipped run. The
object is built here with clang from the source below (test only, never shipped); the counts are
read through what the agent reports them with, and through the runtime as self-metrics.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.stats import recursion_misses
from otel_kubeskoop.config import ProbeConfig
from otel_kubeskoop.probe import Cycle, Kind, NoArgs, Overhead, ProbeSpec, Scope, Source
from otel_kubeskoop.runtime import ProbeRuntime
from otel_kubeskoop.vocabulary import instruments as I
from tests.privileged.bpf.test_program_stats import refused_connects

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[3]
SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(outer, struct sock *sk)
{
	bpf_printk("otel-kubeskoop test: reset");
	return 0;
}

SEC("tp_btf/bpf_trace_printk")
int BPF_PROG(nested, const char *buf)
{
	bpf_printk("otel-kubeskoop test: nested");
	return 0;
}
"""


@pytest.fixture
def recursing(tmp_path):
    """The object loaded and attached: program name -> fd."""
    src, obj_path = tmp_path / "recursion.bpf.c", tmp_path / "recursion.bpf.o"
    src.write_text(SOURCE)
    machine = platform.machine()  # the flags bpf/Makefile builds with
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(machine, machine)
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
                    "-I", str(REPO / "bpf" / "include"), "-I", f"/usr/include/{machine}-linux-gnu",
                    "-c", str(src), "-o", str(obj_path)], check=True, capture_output=True, timeout=120)
    so = libbpf.lib()
    obj = libbpf.check_ptr(so.bpf_object__open_file(str(obj_path).encode(), None), "open")
    links = []
    try:
        libbpf.check_int(so.bpf_object__load(obj), "load")
        fds = {}
        for name in ("outer", "nested"):
            prog = libbpf.check_ptr(so.bpf_object__find_program_by_name(obj, name.encode()), name)
            links.append(libbpf.check_ptr(so.bpf_program__attach(prog), f"attach {name}"))
            fds[name] = so.bpf_program__fd(prog)
        yield fds
    finally:
        for link in links:
            so.bpf_link__destroy(link)
        so.bpf_object__close(obj)


def test_a_run_skipped_as_recursive_is_counted(recursing):
    before = {name: recursion_misses(fd) for name, fd in recursing.items()}
    assert None not in before.values(), "struct bpf_prog_info.recursion_misses (Linux 5.12+) should be here"
    refused_connects(10)
    after = {name: recursion_misses(fd) for name, fd in recursing.items()}
    # Each reset (ours, and any other loopback reset meanwhile) runs outer once and skips nested once.
    assert after["nested"] - before["nested"] >= 10
    assert after["outer"] == before["outer"] == 0


class RecursingProbe:
    """What the runtime sees of a BPF probe: its programs' recursion misses."""

    fds: dict[str, int] = {}

    def __init__(self, args, ctx):
        pass

    def start(self):
        pass

    def collect(self):
        return []

    def bpf_misses(self):
        return {name: recursion_misses(fd) for name, fd in self.fds.items()}

    def stop(self):
        pass


SPEC = ProbeSpec("recursing", "t", frozenset({Kind.METRICS}), Source.BPF, Scope.NODE, Overhead.LOW, "n/a",
                 False, RecursingProbe, (), NoArgs)


def test_the_runtime_reports_them_with_statistics_off(recursing):
    RecursingProbe.fds = recursing
    rt = ProbeRuntime([ProbeConfig("recursing", Kind.METRICS, NoArgs())], registry={"recursing": SPEC})
    rt.start(Cycle())
    try:
        assert rt.program_stats is None

        def misses() -> dict[str, int]:
            return {dict(s.attributes)["kubeskoop.bpf.program"]: s.value
                    for s in rt.self_samples() if s.instrument is I.AGENT_BPF_RECURSION_MISSES}

        before = misses()
        refused_connects(5)
        after = misses()
        assert after["nested"] - before["nested"] >= 5
        assert after["outer"] == 0
    finally:
        rt.stop()
