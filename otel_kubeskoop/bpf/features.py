# SPDX-License-Identifier: Apache-2.0
"""Which attach points the running kernel offers, probed without loading anything."""

from __future__ import annotations

import os

from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf.attach import AttachKind, AttachPoint
from otel_kubeskoop.bpf.kallsyms import parse_kallsyms, read_kallsyms
from otel_kubeskoop.bpf.tracefs import ensure_tracefs

__all__ = ["KernelFeatures"]


class KernelFeatures:
    """The running kernel's attach points, probed without loading anything.

    - ``tp_btf``: kernel BTF has the tracepoint's ``btf_trace_<name>`` typedef;
    - ``tracepoint``: tracefs (mounted if needed) has ``events/<category>/<name>/id``;
    - ``fentry``/``fexit``: kernel BTF has the function. Whether trampolines work is only known by
      loading (this is where EPERM shows up), so the loader falls back if the load fails;
    - ``kprobe``/``kretprobe``: the kernel has kprobes (``/sys/bus/event_source/devices/kprobe`` or
      ``kprobe_events`` in tracefs) and the function is in ``/proc/kallsyms``.

    The paths can be pointed elsewhere (tests); ``tracefs=None`` finds tracefs, mounting it at
    ``/sys/kernel/tracing`` if needed (:func:`~otel_kubeskoop.bpf.tracefs.ensure_tracefs`).
    """

    def __init__(
        self,
        btf_path: str = btf_mod.VMLINUX_BTF,
        tracefs: str | None = None,
        kprobe_pmu: str = "/sys/bus/event_source/devices/kprobe",
        kallsyms: str = "/proc/kallsyms",
    ) -> None:
        self._btf_path = btf_path
        self._kprobe_pmu = kprobe_pmu
        self._kallsyms = kallsyms
        self._btf: btf_mod.BTF | None | str = None
        self._tracefs: tuple[str | None, str] | None = None
        if tracefs is not None:
            found = os.path.isdir(os.path.join(tracefs, "events"))
            self._tracefs = (tracefs if found else None, f"no events/ directory in {tracefs}")
        self._kallsyms_names: frozenset[str] | None = None

    def _kernel_btf(self) -> btf_mod.BTF | str:
        """The kernel BTF, or why there is none."""
        if self._btf is None:
            try:
                if self._btf_path == btf_mod.VMLINUX_BTF:
                    self._btf = btf_mod.vmlinux_btf()
                else:
                    self._btf = btf_mod.read_btf(self._btf_path)
            except FileNotFoundError:
                self._btf = f"kernel without BTF ({self._btf_path} missing: CONFIG_DEBUG_INFO_BTF)"
            except (OSError, btf_mod.BTFError) as exc:
                self._btf = f"kernel BTF unreadable: {exc}"
        return self._btf

    def _tracefs_dir(self) -> tuple[str | None, str]:
        if self._tracefs is None:
            self._tracefs = ensure_tracefs()
        return self._tracefs

    def _has_kprobes(self) -> bool:
        if os.path.exists(self._kprobe_pmu):
            return True
        tracefs, _ = self._tracefs_dir()
        return tracefs is not None and os.path.exists(os.path.join(tracefs, "kprobe_events"))

    def _in_kallsyms(self, function: str) -> bool:
        if self._kallsyms_names is None:
            try:
                self._kallsyms_names = parse_kallsyms(read_kallsyms(self._kallsyms)).symbols
            except OSError:
                return True  # cannot tell: let the attach decide
        return function in self._kallsyms_names

    def unavailable(self, point: AttachPoint) -> str | None:
        kind, target = point.kind, point.target
        if kind in (AttachKind.TP_BTF, AttachKind.FENTRY, AttachKind.FEXIT):
            kernel_btf = self._kernel_btf()
            if isinstance(kernel_btf, str):
                return kernel_btf
            if kind is AttachKind.TP_BTF:
                if not kernel_btf.has("btf_trace_" + target, btf_mod.Kind.TYPEDEF):
                    return f"no BTF tracepoint {target} (btf_trace_{target}) in this kernel"
            elif not kernel_btf.has(target, btf_mod.Kind.FUNC):
                return f"no function {target} in the kernel BTF"
            return None
        if kind is AttachKind.TRACEPOINT:
            tracefs, message = self._tracefs_dir()
            if tracefs is None:
                return f"tracefs unavailable: {message}"
            if not os.path.exists(os.path.join(tracefs, "events", target, "id")):
                return f"no tracepoint {target} in {tracefs}/events"
            return None
        if not self._has_kprobes():
            return "kernel without kprobes (CONFIG_KPROBES)"
        if not self._in_kallsyms(target):
            return f"no kernel symbol {target} in {self._kallsyms}"
        return None
