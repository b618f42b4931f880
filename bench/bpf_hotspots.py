# SPDX-License-Identifier: Apache-2.0
"""Where the probes' kernel time goes, instruction by instruction: iperf3 between two network
namespaces over a veth pair, pinned to CPU 0 as bench/datapath.py does, with a probe set loaded
and ``perf record`` sampling CPU 0 (cpu-clock: this machine has no hardware counters). Each
sample that lands in one of our JIT-compiled programs is mapped to its offset in the program's
image, read back from the kernel (BPF_OBJ_GET_INFO_BY_FD) and disassembled with objdump. A
sample lands on the instruction after one that stalled, so a load that misses the cache shows as
a spike on the instruction that follows it.

    python bench/bpf_hotspots.py packetloss,tcpreset,...,flow [--seconds 8] [--top 6] [--load floor]

Prints, and merges into bench/results/bpf_hotspots.json by probe set: each program's share of
CPU 0 and its hottest offsets with the instructions there and the source line they were compiled
from (the kernel's line info for the JIT image, with bpftool's text of it), and the share of the
kernel functions that run programs at a hook (KERNEL_GROUPS). ``--load floor`` profiles empty
programs on the set's hooks instead (bench/floor.py), ``--load none`` no programs at all: with
iperf3 and its softirqs holding CPU 0, a share of CPU 0 is the share of throughput it costs,
measured to a few hundredths of a percent where throughput pairs vary by several percent. Needs
root, perf, objdump and bpftool.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datapath import floor_of, iperf, started  # noqa: E402

from otel_kubeskoop.bpf import btf, libbpf  # noqa: E402
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery  # noqa: E402
from tests.privileged.netnsutil import netns, veth_pair  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "bpf_hotspots.json"

# Kernel functions whose time a hook's programs cause, whatever the programs do: the tracepoint's
# call into BPF (bpf_trace_run<N>() from the __bpf_trace_<event>() the tracepoint calls,
# kernel/trace/bpf_trace.c), the TC classifier's, and clock reads (read_tsc also runs without
# probes: compare with --load none).
KERNEL_GROUPS = {
    "tracepoint_dispatch": re.compile(r"(bpf_trace_run\d+|__bpf_trace_\w+|__traceiter_\w+)$"),
    "tc_dispatch": re.compile(r"(tcf_classify|cls_bpf_classify|tcx_run|sch_handle_(ingress|egress))$"),
    "clock": re.compile(r"(read_tsc|ktime_get\w*|bpf_ktime_get\w*)$"),
}


def our_programs() -> list[dict]:
    """bpftool's records of the BPF programs this process holds a descriptor of (its fdinfo)."""
    ids = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                ids.update(int(line.split()[1]) for line in f if line.startswith("prog_id:"))
        except OSError:  # the descriptor listing itself, closed by now
            continue
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout
    return [p for p in json.loads(out) if p["id"] in ids]


def prog_info(prog_id: int, arrays: dict[str, tuple[str, int]]) -> tuple[bytes, dict[str, bytes]]:
    """The program's ``struct bpf_prog_info``, and the arrays it points to: name -> (the field that
    counts its records, the record size) for each array field wanted (BPF_OBJ_GET_INFO_BY_FD, asked
    once for the counts and once with buffers)."""
    lib = libbpf.lib()
    layout = btf.vmlinux_btf().struct_layout("bpf_prog_info")
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise SystemExit(f"program {prog_id}: {libbpf.strerror(-fd)}")
    try:
        buf = ctypes.create_string_buffer(layout.size)
        size = ctypes.c_uint32(layout.size)
        if lib.bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size)) != 0:
            raise SystemExit(f"program {prog_id}: no info")
        ask = ctypes.create_string_buffer(layout.size)
        buffers = {}
        for name, (count, record) in arrays.items():
            (n,) = struct.unpack_from("<I", buf.raw, layout.offsets[count])
            buffers[name] = ctypes.create_string_buffer(max(n * record, 1))
            struct.pack_into("<I", ask, layout.offsets[count], n)
            if f"{name}_rec_size" in layout.offsets:
                struct.pack_into("<I", ask, layout.offsets[f"{name}_rec_size"], record)
            struct.pack_into("<Q", ask, layout.offsets[name], ctypes.addressof(buffers[name]))
        size = ctypes.c_uint32(layout.size)
        if lib.bpf_obj_get_info_by_fd(fd, ask, ctypes.byref(size)) != 0:
            raise SystemExit(f"program {prog_id}: no JIT image (bpf_jit_enable off?)")
        return buf.raw, {name: b.raw for name, b in buffers.items()}
    finally:
        os.close(fd)


def jited_image(prog_id: int) -> bytes:
    """The program's machine code, as the kernel's JIT wrote it."""
    return prog_info(prog_id, {"jited_prog_insns": ("jited_prog_len", 1)})[1]["jited_prog_insns"]


def source_lines(prog_id: int, start: int) -> list[tuple[int, str]]:
    """(offset in the JIT image, source line) of each line record of the program, in order: the
    kernel's line info (``struct bpf_line_info``, 16 bytes: the BPF instruction it starts at) and
    the JIT address of each (jited_line_info), with the text bpftool prints for that instruction."""
    _, got = prog_info(prog_id, {"line_info": ("nr_line_info", 16), "jited_line_info": ("nr_jited_line_info", 8)})
    insns = [struct.unpack_from("<I", got["line_info"], i)[0] for i in range(0, len(got["line_info"]) - 15, 16)]
    addrs = [struct.unpack_from("<Q", got["jited_line_info"], i)[0] for i in range(0, len(got["jited_line_info"]) - 7, 8)]
    xlated = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id), "linum"],
                            capture_output=True, text=True, check=True).stdout
    text, pending = {}, ""
    for line in xlated.splitlines():
        if line.startswith(";"):
            m = re.match(r"; (.*) \[file:.*/([^/]+) line_num:(\d+)", line)
            pending = f"{m.group(2)}:{m.group(3)}: {m.group(1).strip()}" if m else line[2:].strip()
        elif m := re.match(r"\s*(\d+):", line):
            if pending:
                text[int(m.group(1))] = pending
                pending = ""
    return [(addr - start, text.get(insn, "")) for insn, addr in zip(insns, addrs)]


def line_at(lines: list[tuple[int, str]], offset: int) -> str:
    """The source line of the instruction before offset (the one a sample there waited on)."""
    before = [text for off, text in lines if off < offset]
    return before[-1] if before else ""


def disassembly(image: bytes) -> dict[int, str]:
    """Offset -> instruction text."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(image)
        f.flush()
        out = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f.name],
                             capture_output=True, text=True, check=True).stdout
    lines = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(.*)", line)
        if m:
            lines[int(m.group(1), 16)] = " ".join(m.group(2).split())
    return lines


def kallsyms(names: set[str]) -> dict[str, int]:
    found = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, _, name = line.split()[:3]
            if name in names:
                found[name] = int(addr, 16)
    return found


def loaded(load: str, probes: list[str], discovery: NetnsDiscovery, interfaces: list) -> contextlib.ExitStack:
    """The programs profiled: the set, empty ones on its hooks, or none; closing the stack removes
    them (and so does a failure part-way through loading them)."""
    with contextlib.ExitStack() as stack:
        if load == "set":
            stack.callback(started(probes, discovery, stats=False).stop)
        elif load == "floor":
            hooks = floor_of(probes, discovery, interfaces)
            stack.callback(hooks.close)
            stack.enter_context(hooks.attached())
        return stack.pop_all()


def profile(probes: list[str], seconds: float, top: int, load: str) -> dict:
    with netns() as a, netns() as b, \
            veth_pair(a, b, "10.231.7.1/24", "10.231.7.2/24") as (dev_a, dev_b):
        server = b.popen("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        discovery = NetnsDiscovery()
        stack = loaded(load, probes, discovery, [(a, dev_a), (b, dev_b)])
        try:
            progs = {f"bpf_prog_{p['tag']}_{p['name']}": p for p in our_programs()}
            starts = kallsyms(set(progs))
            code = {sym: disassembly(jited_image(progs[sym]["id"])) for sym in starts}
            lines = {sym: source_lines(progs[sym]["id"], starts[sym]) for sym in starts}
            iperf(a, "10.231.7.2", 1, "0,0")  # warm-up
            with tempfile.TemporaryDirectory() as tmp:
                data = os.path.join(tmp, "perf.data")
                perf = subprocess.Popen(["perf", "record", "-F", "9999", "-C", "0", "-o", data, "--", "sleep", str(seconds)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                iperf(a, "10.231.7.2", seconds + 1, "0,0")
                perf.wait()
                script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"],
                                        capture_output=True, text=True, check=True).stdout
        finally:
            stack.close()
            discovery.close()
            server.kill()
            server.wait()
    total, hits, kernel = 0, collections.Counter(), collections.Counter()
    for line in script.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        total += 1
        if parts[1] in starts:
            hits[(parts[1], int(parts[0], 16) - starts[parts[1]])] += 1
        for group, pattern in KERNEL_GROUPS.items():
            if pattern.match(parts[1]):
                kernel[group] += 1
    programs = {}
    for sym in starts:
        mine = {off: n for (s, off), n in hits.items() if s == sym}
        if not mine:
            continue
        offsets = sorted(code[sym])
        hottest = []
        for off, n in sorted(mine.items(), key=lambda kv: -kv[1])[:top]:
            before = [o for o in offsets if o < off][-2:]  # the stalled instruction is just before
            hottest.append({"offset": off, "share_of_program": round(n / sum(mine.values()), 3),
                            "instructions": [code[sym][o] for o in before + [off] if o in code[sym]],
                            "source": line_at(lines[sym], off)})
        programs[progs[sym]["name"]] = {"share_of_cpu0": round(sum(mine.values()) / total, 4), "hottest": hottest}
    return {"probes": probes, "load": load, "seconds": seconds, "samples": total,
            "bpf_share_of_cpu0": round(sum(hits.values()) / total, 4),
            "kernel_share_of_cpu0": {g: round(kernel[g] / total, 4) for g in KERNEL_GROUPS},
            "programs": dict(sorted(programs.items(), key=lambda kv: -kv[1]["share_of_cpu0"]))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("set", help="comma-separated probe names loaded together")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--top", type=int, default=6, help="hottest offsets shown per program")
    parser.add_argument("--load", choices=("set", "floor", "none"), default="set",
                        help="profile the set, empty programs on its hooks, or no programs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/bpf_hotspots.py needs root")
    for tool in ("perf", "objdump", "bpftool", "iperf3"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/bpf_hotspots.py needs {tool}")
    row = profile(args.set.split(","), args.seconds, args.top, args.load)
    row["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(row, indent=1))
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results[args.set + ("" if args.load == "set" else f" ({args.load})")] = row
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
