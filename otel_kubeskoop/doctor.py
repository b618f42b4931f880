# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop doctor`` and the availability column of ``otel-kubeskoop probes``."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from otel_kubeskoop import environment_variables as env
from otel_kubeskoop.bpf.tracefs import ensure_tracefs
from otel_kubeskoop.config import Config
from otel_kubeskoop.probe import Cycle, ProbeContext, Unavailable
from otel_kubeskoop.probes import ALL_PROBES
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str  # ok | warn | fail
    detail: str


def probe_availability(config: Config) -> list[dict[str, Any]]:
    """Start and stop every registered probe once to learn whether it can run here, and why not."""
    rows = []
    for spec in ALL_PROBES:
        ctx = ProbeContext(name=spec.name, proc_root=config.raw.proc_root, cycle=Cycle())
        available, reason = True, ""
        try:
            probe = spec.factory(spec.args(), ctx)
            probe.start()
            probe.stop()
        except Unavailable as exc:
            available, reason = False, str(exc)
        except Exception as exc:  # report, never crash the listing
            available, reason = False, f"{type(exc).__name__}: {exc}"
        rows.append({
            "name": spec.name, "summary": spec.summary, "kinds": sorted(k.value for k in spec.kinds),
            "source": spec.source.value, "scope": spec.scope.value, "overhead": spec.overhead.value,
            "overhead_note": spec.overhead_note, "default_enabled": spec.default_enabled,
            "available": available, "reason": reason,
        })
    return rows


def _capabilities(config: Config) -> Check:
    from otel_kubeskoop import capabilities

    try:
        lines = capabilities.lacking(p.name for p in config.probes)
    except (OSError, ValueError) as exc:
        return Check("capabilities", "warn", f"cannot read CapEff from /proc/self/status: {exc}")
    if not lines:
        return Check("capabilities", "ok", f"every configured probe has what it needs ({', '.join(sorted(capabilities.held()))})")
    return Check("capabilities", "fail", "; ".join(lines))


def _libbpf() -> list[Check]:
    from otel_kubeskoop.bpf import libbpf, selftest

    try:
        version = libbpf.version()
    except OSError as exc:
        return [Check("libbpf", "warn", f"libbpf.so.1 not loadable ({exc}); eBPF probes will be unavailable (Debian: libbpf1)")]
    checks = [Check("libbpf", "ok", f"libbpf.so.1 version {version}")]
    try:
        checks.append(Check("ebpf", "ok", selftest.check()))
    except (Unavailable, FileNotFoundError) as exc:
        checks.append(Check("ebpf", "warn", f"cannot load and attach the selftest program: {exc}"))
    return checks


def _otlp(config: Config) -> Check:
    if not config.otlp.enabled:
        return Check("otlp", "warn", "no endpoint configured (otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT): "
                     "no OTLP export; probe health on /status, events as JSON lines on stdout")
    endpoint = (config.otlp.endpoint or os.environ.get(env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)
                or os.environ.get(env.OTEL_EXPORTER_OTLP_ENDPOINT) or "")
    url = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    port = url.port or (443 if url.scheme == "https" else 4317 if config.otlp.protocol == "grpc" else 4318)
    try:
        with socket.create_connection((url.hostname or "localhost", port), timeout=3):
            pass
    except OSError as exc:
        return Check("otlp", "fail", f"{config.otlp.protocol} endpoint {endpoint}: cannot connect to {url.hostname}:{port}: {exc}")
    return Check("otlp", "ok", f"{config.otlp.protocol} endpoint {endpoint} accepts connections")


def _namespaces(config: Config) -> Check:
    """The same discovery the agent runs: how many namespaces, and which is the host's."""
    with NetnsDiscovery(proc_root=config.raw.proc_root, netns_dir=config.raw.netns_dir) as discovery:
        found = discovery.scan()
    host = [ns for ns in found.values() if ns.is_host]
    named = sum(1 for ns in found.values() if ns.name)
    if not host:
        return Check("namespaces", "fail", f"{len(found)} found, none identified as the host's: cannot read "
                     f"{config.raw.proc_root}/1/ns/net nor kthreadd's (run with hostPID and CAP_SYS_PTRACE)")
    return Check("namespaces", "ok", f"{len(found)} network namespaces ({named} named under {config.raw.netns_dir}); "
                 f"host namespace {host[0].inode} via pid {host[0].pid}")


def run_checks(config: Config) -> list[Check]:
    checks = [Check("kernel", "ok", f"{platform.system()} {platform.release()} {platform.machine()}")]
    btf = "/sys/kernel/btf/vmlinux"
    checks.append(Check("btf", "ok", f"{btf} present") if os.path.exists(btf)
                  else Check("btf", "warn", f"{btf} missing: eBPF probes need a kernel with CONFIG_DEBUG_INFO_BTF"))
    tracefs, message = ensure_tracefs()
    checks.append(Check("tracefs", "ok" if tracefs else "warn", message + ("" if tracefs else "; classic tracepoints unavailable")))
    kprobes = os.path.exists("/sys/kernel/tracing/kprobe_events") or os.path.exists("/sys/kernel/debug/tracing/kprobe_events")
    checks.append(Check("kprobes", "ok" if kprobes else "warn",
                        "kprobe_events present" if kprobes else "no kprobe_events: kernel without CONFIG_KPROBES; probes needing kprobes are unavailable"))
    checks.append(_capabilities(config))
    checks.extend(_libbpf())
    checks.append(_namespaces(config))
    rows = probe_availability(config)
    configured = {p.name for p in config.probes}
    bad = [f"{r['name']} ({r['reason']})" for r in rows if r["name"] in configured and not r["available"]]
    checks.append(Check("probes", "warn" if bad else "ok",
                        ("unavailable: " + "; ".join(bad)) if bad else f"all {len(configured)} configured probes can run"))
    checks.append(Check("kubernetes", "ok", "pod attribution not in this version: namespaces are reported by inode"))
    checks.append(_otlp(config))
    return checks
