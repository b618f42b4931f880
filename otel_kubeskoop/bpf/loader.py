# SPDX-License-Identifier: Apache-2.0
"""Load a compiled BPF object: open -> settings -> choose attach points -> load -> attach -> close.

The libbpf-tools lifecycle (style.md rule 5), driven from Python through :mod:`.libbpf`:

1. **open** the ``.bpf.o``; check that every program a plan names exists with the section its
   attach point implies (section names are an API); apply ``max_entries`` overrides and write
   ``const volatile`` settings (``targ_*``) into ``.rodata``, at offsets read from the BTF libbpf
   fixed up at open.
2. **choose**, for each logical hook, the first :class:`Candidate` of its :class:`AttachPlan` whose
   kernel feature is present (:class:`KernelFeatures`; :func:`choose` is pure), and turn autoload
   off for every other program, so that the verifier never sees a program we will not attach.
3. **load**. If the kernel rejects a chosen program (fentry gets EPERM on some kernels; a BTF
   tracepoint may have other arguments on an old one), that candidate is marked rejected and the
   object is opened again and loaded with the hook's next candidate. When a hook has no candidate
   left, :class:`~otel_kubeskoop.probe.Unavailable` carries libbpf's last log lines (the verifier's
   verdict).
4. **attach** each chosen program (a failure falls back the same way).
5. read maps (:class:`BPFMap`) and ring buffers (:class:`RingBuffer`) while attached.
6. **close**: free ring buffers, destroy links, close the object. Idempotent, also run when the
   object is garbage-collected.

A :class:`BPFObject` is used from one thread at a time, except :meth:`RingBuffer.poll`, which may
run on a thread of its own: :meth:`BPFObject.close` waits for a poll in progress to return.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import logging
import mmap
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.kallsyms import parse_kallsyms, read_kallsyms
from otel_kubeskoop.bpf.libbpf import BatchOpts, LibbpfError, MapType, check_int, check_ptr
from otel_kubeskoop.bpf.tracefs import ensure_tracefs
from otel_kubeskoop.probe import Unavailable

__all__ = [
    "AttachKind",
    "AttachPlan",
    "AttachPoint",
    "BPFMap",
    "BPFObject",
    "Candidate",
    "Features",
    "KernelFeatures",
    "RingBuffer",
    "choose",
]

_log = logging.getLogger(__name__)

#: Lines of libbpf's log kept in an Unavailable message.
LOG_TAIL_LINES = 25
_ENOTSUPP = 524  # the kernel-internal "operation not supported" some map operations return
_PROG_IN_LOG = re.compile(r"prog '([^']+)'")


class AttachKind(enum.StrEnum):
    """Where a program attaches, in the DESIGN section 6 order of preference, and its target:

    - ``tp_btf``: BTF tracepoint; the tracepoint (``tcp_receive_reset``)
    - ``tracepoint``: classic tracepoint; ``category/name`` (``tcp/tcp_receive_reset``)
    - ``fentry``: BPF trampoline on a kernel function; the function
    - ``kprobe``: kprobe on a kernel function; the function

    and, for hooks on a function's return (an interval from entry to return), ``fexit`` (BPF
    trampoline, needs what ``fentry`` needs) and ``kretprobe`` (needs what ``kprobe`` needs).
    """

    TP_BTF = "tp_btf"
    TRACEPOINT = "tracepoint"
    FENTRY = "fentry"
    KPROBE = "kprobe"
    FEXIT = "fexit"
    KRETPROBE = "kretprobe"


AttachKindName = Literal["tp_btf", "tracepoint", "fentry", "kprobe", "fexit", "kretprobe"]


@dataclass(frozen=True, slots=True)
class AttachPoint:
    """Where one program attaches: ``AttachPoint("tp_btf", "tcp_receive_reset")``.

    ``kind`` is always an :class:`AttachKind` after construction (a str compares equal to it).
    """

    kind: AttachKind | AttachKindName
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AttachKind(self.kind))
        if self.kind is AttachKind.TRACEPOINT and self.target.count("/") != 1:
            raise ValueError(f"classic tracepoint target {self.target!r} is not 'category/name'")
        if not self.target:
            raise ValueError("an attach point needs a target")

    @property
    def section(self) -> str:
        """The ELF section (``SEC("...")``) a program for this point has."""
        return f"{AttachKind(self.kind).value}/{self.target}"

    def __str__(self) -> str:
        return self.section


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to implement a hook: a program in the object and where it attaches."""

    program: str
    point: AttachPoint


@dataclass(frozen=True, slots=True)
class AttachPlan:
    """A logical hook (``"reset"``) and its candidates, most preferred first."""

    hook: str
    candidates: tuple[Candidate, ...]

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError(f"attach plan {self.hook!r} has no candidates")

    @classmethod
    def of(cls, hook: str, *candidates: tuple[str, AttachKind | AttachKindName, str]) -> AttachPlan:
        """``AttachPlan.of("reset", ("prog_btf", "tp_btf", "tcp_receive_reset"), ...)``."""
        return cls(
            hook,
            tuple(Candidate(prog, AttachPoint(kind, target)) for prog, kind, target in candidates),
        )

    @property
    def programs(self) -> tuple[str, ...]:
        return tuple(c.program for c in self.candidates)


# --- choosing attach points -------------------------------------------------------------


class Features(Protocol):
    """What the kernel offers: ``unavailable`` is None when a point can be tried, else why not."""

    def unavailable(self, point: AttachPoint) -> str | None: ...


def choose(
    plan: AttachPlan, features: Features, rejected: Mapping[str, str] | None = None
) -> Candidate:
    """The first candidate of ``plan`` that ``features`` allows and that was not ``rejected``
    (program -> why, from an earlier load or attach). ``Unavailable`` lists every reason."""
    rejected = rejected or {}
    reasons = []
    for candidate in plan.candidates:
        if candidate.program in rejected:
            reasons.append(f"{candidate.point}: {rejected[candidate.program]}")
            continue
        why = features.unavailable(candidate.point)
        if why is None:
            return candidate
        reasons.append(f"{candidate.point}: {why}")
    raise Unavailable(f"no usable attach point for {plan.hook!r}: " + "; ".join(reasons))


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


# --- the object ---------------------------------------------------------------------------


class _Resources:
    """Everything native one BPFObject owns, released in reverse order exactly once."""

    def __init__(self) -> None:
        self.obj: int | None = None
        self.links: list[int] = []
        self.ringbufs: list[RingBuffer] = []

    def release_links(self) -> None:
        while self.links:
            libbpf.lib().bpf_link__destroy(self.links.pop())

    def release(self) -> None:
        for ringbuf in self.ringbufs:
            ringbuf.close()
        self.ringbufs.clear()
        self.release_links()
        if self.obj:
            libbpf.lib().bpf_object__close(self.obj)
            self.obj = None


def _tail(lines: Sequence[str], limit: int = LOG_TAIL_LINES) -> str:
    flat = [line for text in lines for line in text.splitlines() if line.strip()]
    shown = flat[-limit:]
    if len(flat) > limit:
        shown.insert(0, f"... ({len(flat) - limit} earlier lines)")
    return "\n".join(shown)


def _failed_program(lines: Sequence[str], candidates: Iterable[str]) -> str | None:
    """The chosen program libbpf's log blames for a failure (the last one it names)."""
    wanted = set(candidates)
    for text in reversed(lines):
        for name in reversed(_PROG_IN_LOG.findall(text)):
            if name in wanted:
                return name
    return None


Setting = bytes | int | bool


class BPFObject:
    """One compiled BPF object and the programs, maps and ring buffers it has while attached.

    ``plans``: one :class:`AttachPlan` per hook. ``rodata``: ``const volatile`` settings by name;
    an int or bool is encoded with the variable's own size and signedness (from BTF), bytes must
    have exactly its size. ``max_entries``: map sizes to change before load (ring buffer bytes).
    ``load_only``: programs loaded but attached by the caller through their fds
    (:meth:`program_fds`), such as TC classifiers (``SEC("tc")``, :mod:`otel_kubeskoop.bpf.tc`).
    """

    def __init__(
        self,
        path: str,
        plans: Iterable[AttachPlan],
        rodata: Mapping[str, Setting] | None = None,
        max_entries: Mapping[str, int] | None = None,
        features: Features | None = None,
        load_only: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.name = os.path.basename(path).removesuffix(".bpf.o")
        self.plans = tuple(plans)
        hooks = [p.hook for p in self.plans]
        programs = [prog for p in self.plans for prog in p.programs]
        if len(set(hooks)) != len(hooks) or len(set(programs)) != len(programs):
            raise ValueError(f"{self.name}: a hook or a program appears in two attach plans")
        self.rodata = dict(rodata or {})
        self.max_entries = dict(max_entries or {})
        self.features: Features = features or KernelFeatures()
        self.load_only = tuple(load_only)
        if set(self.load_only) & set(programs):
            raise ValueError(f"{self.name}: a program is both in an attach plan and load-only")
        #: hook -> the attach point in use, once loaded
        self.chosen: dict[str, AttachPoint] = {}
        #: program -> why it was tried and not used (load or attach failure)
        self.rejected: dict[str, str] = {}
        #: seconds spent in each step (open includes re-opens after a rejected candidate)
        self.timings: dict[str, float] = {"open": 0.0, "load": 0.0, "attach": 0.0}
        self._state = "new"
        self._choice: dict[str, Candidate] = {}
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)

    def __repr__(self) -> str:
        return f"<BPFObject {self.name} {self._state}>"

    def __enter__(self) -> BPFObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> str:
        """new, opened, loaded, attached or closed."""
        return self._state

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> BPFObject:
        """open + load + attach."""
        self.attach()
        return self

    def open(self) -> None:
        """Open the object, check the plans' program names and apply settings."""
        self._require("new")
        began = time.perf_counter()
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        finally:
            self.timings["open"] += time.perf_counter() - began
        self._state = "opened"

    def load(self) -> None:
        """Choose a candidate per hook and load; fall back past candidates the kernel rejects."""
        if self._state == "new":
            self.open()
        self._require("opened")
        began = time.perf_counter()
        try:
            self._load()
        except BaseException:
            self.close()
            raise
        finally:
            self.timings["load"] += time.perf_counter() - began
        self._state = "loaded"

    def attach(self) -> None:
        """Attach every chosen program; a failing candidate falls back like a failed load."""
        if self._state in ("new", "opened"):
            self.load()
        self._require("loaded")
        began = time.perf_counter()
        try:
            while not self._attach_all():
                # A candidate failed to attach: reload without it, then attach again.
                self._res.release()
                self._reopen()
                self._load()
        except BaseException:
            self.close()
            raise
        finally:
            self.timings["attach"] += time.perf_counter() - began
        self._state = "attached"

    def close(self) -> None:
        """Detach and free everything. Safe to call any number of times."""
        self._finalizer()
        self._state = "closed"

    def _require(self, state: str) -> None:
        if self._state != state:
            raise RuntimeError(f"{self.name}: is {self._state}, expected {state}")

    # --- steps ----------------------------------------------------------------------------

    def _open(self) -> None:
        so = libbpf.lib()
        with libbpf.captured_log() as lines:
            ptr = so.bpf_object__open_file(self.path.encode(), None)
            if not ptr:
                err = ctypes.get_errno() or errno.EINVAL
                raise Unavailable(
                    f"{self.name}: opening {self.path} failed: {libbpf.strerror(err)}\n"
                    + _tail(lines)
                )
        self._res.obj = ptr
        self._check_programs()
        for name, entries in self.max_entries.items():
            check_int(
                so.bpf_map__set_max_entries(self._find_map(name), entries),
                f"{self.name}: max_entries of {name}",
            )
        if self.rodata:
            self._write_rodata()

    def _reopen(self) -> None:
        began = time.perf_counter()
        self._res.release()
        self._open()
        self.timings["open"] += time.perf_counter() - began

    def _program(self, name: str) -> int:
        ptr = libbpf.lib().bpf_object__find_program_by_name(self._res.obj, name.encode())
        if not ptr:
            raise LookupError(f"{self.name}: no program {name!r} in {self.path}")
        return ptr

    def _find_map(self, name: str) -> int:
        ptr = libbpf.lib().bpf_object__find_map_by_name(self._res.obj, name.encode())
        if not ptr:
            raise LookupError(f"{self.name}: no map {name!r} in {self.path}")
        return ptr

    def _check_programs(self) -> None:
        so = libbpf.lib()
        for name in self.load_only:
            self._program(name)
        for plan in self.plans:
            for candidate in plan.candidates:
                section = so.bpf_program__section_name(self._program(candidate.program)).decode()
                if section != candidate.point.section:
                    raise LookupError(
                        f"{self.name}: program {candidate.program!r} is in section {section!r}, "
                        f"but its plan says {candidate.point.section!r}"
                    )

    def program_names(self) -> list[str]:
        """Every program in the object (after open)."""
        so, names, prog = libbpf.lib(), [], None
        while prog := so.bpf_object__next_program(self._res.obj, prog):
            names.append(so.bpf_program__name(prog).decode())
        return names

    def program_fds(self) -> dict[str, int]:
        """Loaded programs by name, with their fds (for per-program statistics)."""
        if self._state not in ("loaded", "attached"):
            return {}
        so = libbpf.lib()
        out = {}
        for name in self.program_names():
            ptr = self._program(name)
            fd = so.bpf_program__fd(ptr) if so.bpf_program__autoload(ptr) else -1
            if fd >= 0:
                out[name] = fd
        return out

    def map_names(self) -> list[str]:
        """Every map in the object, including libbpf's internal ones (``.rodata``...)."""
        so, names, m = libbpf.lib(), [], None
        while m := so.bpf_object__next_map(self._res.obj, m):
            names.append(so.bpf_map__name(m).decode())
        return names

    def _btf(self) -> btf_mod.BTF:
        """The object's BTF as libbpf fixed it up at open (data section offsets filled in)."""
        so = libbpf.lib()
        handle = check_ptr(so.bpf_object__btf(self._res.obj), f"{self.name}: object BTF")
        size = ctypes.c_uint32()
        raw = check_ptr(so.btf__raw_data(handle, ctypes.byref(size)), f"{self.name}: raw BTF")
        return btf_mod.parse_btf(ctypes.string_at(raw, size.value), f"{self.path} (libbpf)")

    def _write_rodata(self) -> None:
        so = libbpf.lib()
        obj_btf = self._btf()
        layout = obj_btf.datasec(".rodata")
        size = ctypes.c_size_t()
        base = check_ptr(
            so.bpf_map__initial_value(self._find_map(".rodata"), ctypes.byref(size)),
            f"{self.name}: .rodata initial value",
        )
        for name, value in self.rodata.items():
            if name not in layout:
                raise LookupError(f"{self.name}: no const volatile {name!r} in .rodata")
            offset, var_size = layout[name]
            if offset + var_size > size.value:
                raise LookupError(f"{self.name}: {name!r} lies outside .rodata")
            if isinstance(value, bytes):
                data = value
            else:
                int_size, signed = obj_btf.int_encoding(obj_btf.var_type(name))
                data = int(value).to_bytes(int_size, "little", signed=signed)
            if len(data) != var_size:
                raise ValueError(f"{self.name}: {name!r} takes {var_size} bytes, got {len(data)}")
            ctypes.memmove(base + offset, data, var_size)

    def _load(self) -> None:
        so = libbpf.lib()
        planned = {prog for plan in self.plans for prog in plan.programs} | set(self.load_only)
        while True:
            try:
                self._choice = {
                    plan.hook: choose(plan, self.features, self.rejected) for plan in self.plans
                }
            except Unavailable as exc:
                raise Unavailable(f"{self.name}: {exc}") from None
            chosen_programs = {c.program for c in self._choice.values()}
            for prog_name in self.program_names():
                keep = prog_name in chosen_programs or prog_name in self.load_only
                if prog_name not in planned:
                    _log.debug(
                        "%s: program %s is in no attach plan; not loaded", self.name, prog_name
                    )
                check_int(
                    so.bpf_program__set_autoload(self._program(prog_name), keep),
                    f"{self.name}: set_autoload {prog_name}",
                )
            with libbpf.captured_log() as lines:
                ret = so.bpf_object__load(self._res.obj)
            if ret == 0:
                self.chosen = {hook: c.point for hook, c in self._choice.items()}
                return
            err = -ret
            failed = _failed_program(lines, chosen_programs)
            hook = next((h for h, c in self._choice.items() if c.program == failed), None)
            reason = f"load failed: {errno.errorcode.get(err, err)} ({libbpf.strerror(err)})"
            if failed is not None and hook is not None and self._has_alternative(hook, failed):
                _log.debug("%s: %s %s; falling back", self.name, failed, reason)
                self.rejected[failed] = reason
                self._reopen()
                continue
            if failed is None or hook is None:
                raise Unavailable(f"{self.name}: {reason}\n{_tail(lines)}")
            self.rejected[failed] = reason
            raise Unavailable(f"{self.name}: {self._why_not(hook)}\n{_tail(lines)}")

    def _why_not(self, hook: str) -> str:
        """Why no candidate of ``hook`` is left, candidate by candidate."""
        plan = next(p for p in self.plans if p.hook == hook)
        try:
            choose(plan, self.features, self.rejected)
        except Unavailable as exc:
            return str(exc)
        return f"hook {hook!r} failed"

    def _has_alternative(self, hook: str, failed: str) -> bool:
        plan = next(p for p in self.plans if p.hook == hook)
        rejected = dict(self.rejected)
        rejected[failed] = "rejected"
        try:
            choose(plan, self.features, rejected)
        except Unavailable:
            return False
        return True

    def _attach_all(self) -> bool:
        """Attach the chosen programs; False after rejecting one that failed but has a fallback."""
        so = libbpf.lib()
        for hook, candidate in self._choice.items():
            prog = self._program(candidate.program)
            point = candidate.point
            with libbpf.captured_log() as lines:
                if point.kind is AttachKind.TRACEPOINT:
                    category, name = point.target.split("/")
                    link = so.bpf_program__attach_tracepoint(prog, category.encode(), name.encode())
                elif point.kind in (AttachKind.KPROBE, AttachKind.KRETPROBE):
                    retprobe = point.kind is AttachKind.KRETPROBE
                    link = so.bpf_program__attach_kprobe(prog, retprobe, point.target.encode())
                else:  # tp_btf, fentry, fexit: the target was fixed at load from the section
                    link = so.bpf_program__attach(prog)
                err = ctypes.get_errno() or errno.EINVAL
            if link:
                self._res.links.append(link)
                continue
            reason = f"attach failed: {errno.errorcode.get(err, err)} ({libbpf.strerror(err)})"
            self.rejected[candidate.program] = reason
            if self._has_alternative(hook, candidate.program):
                _log.debug("%s: %s %s; falling back", self.name, candidate.program, reason)
                return False
            raise Unavailable(f"{self.name}: {self._why_not(hook)}\n{_tail(lines)}")
        return True

    # --- maps and ring buffers ------------------------------------------------------------

    def map(
        self,
        name: str,
        key: type[Any] | None = None,
        value: type[Any] | None = None,
        percpu: Literal["sum", "list"] | None = None,
        batch: bool = True,
    ) -> BPFMap:
        """A loaded map. ``key``/``value``: ctypes types to decode with (bytes otherwise).

        Per-CPU values come as a list per possible CPU, or summed (``percpu="sum"``, the
        default for integer values). ``batch=False`` reads element by element even where the
        kernel has batch operations (Linux 5.6+), as on kernels without them.
        """
        if self._state not in ("loaded", "attached"):
            raise RuntimeError(f"{self.name}: maps exist once loaded (is {self._state})")
        so = libbpf.lib()
        ptr = self._find_map(name)
        return BPFMap(
            self._res,
            name,
            fd=check_int(so.bpf_map__fd(ptr), f"{self.name}: fd of map {name}"),
            map_type=so.bpf_map__type(ptr),
            key_size=so.bpf_map__key_size(ptr),
            value_size=so.bpf_map__value_size(ptr),
            max_entries=so.bpf_map__max_entries(ptr),
            key_type=key,
            value_type=value,
            percpu=percpu,
            batch=batch,
        )

    def ringbuf(self, name: str, callback: Callable[[bytes], None]) -> RingBuffer:
        """A consumer of ring buffer ``name``; ``callback(record)`` runs in ``poll()``."""
        if self._state not in ("loaded", "attached"):
            raise RuntimeError(f"{self.name}: ring buffers exist once loaded (is {self._state})")
        so = libbpf.lib()
        ptr = self._find_map(name)
        if so.bpf_map__type(ptr) != MapType.RINGBUF:
            raise TypeError(f"{self.name}: map {name!r} is not a ring buffer")
        ringbuf = RingBuffer(
            name, check_int(so.bpf_map__fd(ptr), f"{self.name}: fd of {name}"), callback
        )
        self._res.ringbufs.append(ringbuf)
        return ringbuf


# --- maps ---------------------------------------------------------------------------------


_SimpleCData: type = ctypes.c_int.__bases__[0]  # ctypes._SimpleCData, not exported


def _is_int_type(t: type[Any] | None) -> bool:
    """A ctypes integer type (c_uint64...), whose instances decode to ``.value``."""
    if t is None or not issubclass(t, _SimpleCData):
        return False
    return isinstance(getattr(t(), "value", None), int)


class BPFMap:
    """A loaded map, read through its file descriptor (valid until the object closes)."""

    #: entries asked for per batch call
    BATCH = 4096

    def __init__(
        self,
        owner: _Resources,
        name: str,
        fd: int,
        map_type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        key_type: type[Any] | None = None,
        value_type: type[Any] | None = None,
        percpu: Literal["sum", "list"] | None = None,
        batch: bool = True,
    ) -> None:
        self._owner = owner
        self.name = name
        self.fd = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.key_type = key_type
        self.value_type = value_type
        for t, size, what in ((key_type, key_size, "key"), (value_type, value_size, "value")):
            if t is not None and ctypes.sizeof(t) != size:
                raise TypeError(
                    f"map {name}: {what} type {t.__name__} has {ctypes.sizeof(t)} bytes, "
                    f"the map's have {size}"
                )
        self.is_percpu = map_type in MapType.PERCPU
        self.ncpus = libbpf.lib().libbpf_num_possible_cpus() if self.is_percpu else 1
        if self.ncpus <= 0:
            raise LibbpfError(-self.ncpus, f"map {name}: number of possible CPUs unknown")
        # A per-CPU value is one 8-byte-aligned slot per possible CPU.
        self._slot = (value_size + 7) & ~7 if self.is_percpu else value_size
        self._value_bytes = self._slot * self.ncpus
        if percpu is None:
            percpu = "sum" if value_type is None or _is_int_type(value_type) else "list"
        if (
            percpu == "sum"
            and self.is_percpu
            and not (value_type is None or _is_int_type(value_type))
        ):
            raise TypeError(f"map {name}: only integer per-CPU values can be summed")
        self.percpu = percpu
        self._batch_ok = batch

    def __repr__(self) -> str:
        return f"<BPFMap {self.name} type={self.map_type} entries<={self.max_entries}>"

    def _check_open(self) -> None:
        if self._owner.obj is None:
            raise RuntimeError(f"map {self.name}: its object is closed")

    # encoding

    def _key_bytes(self, key: Any) -> bytes:
        if isinstance(key, int):
            data = key.to_bytes(self.key_size, "little")
        else:
            try:
                data = bytes(key)  # bytes, or a ctypes instance (they export their buffer)
            except TypeError:
                raise TypeError(
                    f"map {self.name}: cannot use {type(key).__name__} as a key"
                ) from None
        if len(data) != self.key_size:
            raise ValueError(
                f"map {self.name}: key of {len(data)} bytes, map keys have {self.key_size}"
            )
        return data

    def _decode_key(self, raw: bytes) -> Any:
        if self.key_type is None:
            return raw
        key = self.key_type.from_buffer_copy(raw)
        return key.value if _is_int_type(self.key_type) else key

    def _decode_one(self, raw: bytes) -> Any:
        if self.value_type is None:
            return int.from_bytes(raw, "little") if self.percpu == "sum" and self.is_percpu else raw
        value = self.value_type.from_buffer_copy(raw)
        return value.value if _is_int_type(self.value_type) else value

    def _decode_value(self, raw: bytes) -> Any:
        if not self.is_percpu:
            return self._decode_one(raw)
        per_cpu = [
            self._decode_one(raw[i * self._slot : i * self._slot + self.value_size])
            for i in range(self.ncpus)
        ]
        return sum(per_cpu) if self.percpu == "sum" else per_cpu

    # single elements

    def lookup(self, key: Any) -> Any | None:
        """The value under ``key``, or None."""
        self._check_open()
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        v = ctypes.create_string_buffer(self._value_bytes)
        ret = libbpf.lib().bpf_map_lookup_elem(self.fd, k, v)
        if ret == -errno.ENOENT:
            return None
        check_int(ret, f"map {self.name}: lookup")
        return self._decode_value(v.raw)

    def update(self, key: Any, value: bytes | Any) -> None:
        """Set ``key`` (for per-CPU maps ``value`` holds every CPU's slot)."""
        self._check_open()
        data = value if isinstance(value, bytes) else bytes(value)
        if len(data) != self._value_bytes:
            raise ValueError(
                f"map {self.name}: value of {len(data)} bytes, need {self._value_bytes}"
            )
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        check_int(
            libbpf.lib().bpf_map_update_elem(
                self.fd, k, ctypes.create_string_buffer(data, len(data)), libbpf.BPF_ANY
            ),
            f"map {self.name}: update",
        )

    def delete(self, key: Any) -> bool:
        """Remove ``key``; False if it was not there."""
        self._check_open()
        k = ctypes.create_string_buffer(self._key_bytes(key), self.key_size)
        ret = libbpf.lib().bpf_map_delete_elem(self.fd, k)
        if ret == -errno.ENOENT:
            return False
        check_int(ret, f"map {self.name}: delete")
        return True

    def _raw_keys(self) -> list[bytes]:
        """Every key, by get_next_key (bounded, since a map can change while we walk it)."""
        so = libbpf.lib()
        keys: list[bytes] = []
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        for _ in range(2 * self.max_entries + 1):
            ret = so.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -errno.ENOENT:
                break
            check_int(ret, f"map {self.name}: get_next_key")
            keys.append(nxt.raw)
            prev = ctypes.create_string_buffer(nxt.raw, self.key_size)
        return list(dict.fromkeys(keys))

    # whole map

    @contextmanager
    def mapped(self) -> Iterator[memoryview]:
        """The values of an ARRAY map created with BPF_F_MMAPABLE, in place, read and write:
        value i at i * (value size rounded up to 8) (kernel/bpf/arraymap.c, elem_size). One
        mmap() for the whole array instead of a copy through the syscall per read."""
        self._check_open()
        if self.map_type != MapType.ARRAY:
            raise TypeError(f"map {self.name}: only an array map can be mapped")
        size = self.max_entries * ((self.value_size + 7) & ~7)
        length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        area = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            with memoryview(area) as whole, whole[:size] as view:
                yield view
        finally:
            area.close()

    def _batch(self, delete: bool) -> list[tuple[bytes, bytes]] | None:
        """All entries by BPF_MAP_LOOKUP(_AND_DELETE)_BATCH; None where the kernel lacks it."""
        so = libbpf.lib()
        fn = so.bpf_map_lookup_and_delete_batch if delete else so.bpf_map_lookup_batch
        token_size = max(self.key_size, 8)
        in_batch: ctypes.Array[ctypes.c_char] | None = None
        out_batch = ctypes.create_string_buffer(token_size)
        chunk = max(1, min(self.max_entries, self.BATCH))
        opts = BatchOpts()
        entries: list[tuple[bytes, bytes]] = []
        first = True
        while True:
            keys = ctypes.create_string_buffer(chunk * self.key_size)
            values = ctypes.create_string_buffer(chunk * self._value_bytes)
            count = ctypes.c_uint32(chunk)
            ret = fn(
                self.fd, in_batch, out_batch, keys, values, ctypes.byref(count), ctypes.byref(opts)
            )
            n = count.value
            for i in range(n):
                entries.append(
                    (
                        keys.raw[i * self.key_size : (i + 1) * self.key_size],
                        values.raw[i * self._value_bytes : (i + 1) * self._value_bytes],
                    )
                )
            if ret == 0:
                in_batch = ctypes.create_string_buffer(out_batch.raw, token_size)
                first = False
                continue
            err = -ret
            if err == errno.ENOENT:
                return entries
            if err == errno.ENOSPC and n == 0 and chunk < 1 << 20:
                chunk *= 2  # a hash bucket holds more entries than one chunk
                continue
            if first and err in (
                errno.EINVAL,
                errno.EOPNOTSUPP,
                errno.ENOSYS,
                errno.EPERM,
                _ENOTSUPP,
            ):
                return None
            check_int(ret, f"map {self.name}: {'lookup_and_delete' if delete else 'lookup'} batch")

    def _entries(self) -> list[tuple[bytes, bytes]]:
        self._check_open()
        if self._batch_ok:
            found = self._batch(delete=False)
            if found is not None:
                return found
            self._batch_ok = False
        so = libbpf.lib()
        entries = []
        for key in self._raw_keys():
            v = ctypes.create_string_buffer(self._value_bytes)
            if so.bpf_map_lookup_elem(self.fd, key, v) == 0:
                entries.append((key, v.raw))
        return entries

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value), decoded."""
        return [(self._decode_key(k), self._decode_value(v)) for k, v in self._entries()]

    def pop_all(self) -> list[tuple[Any, Any]]:
        """Read and remove every entry (hash maps): the kernel starts counting again from zero.

        Arrays cannot remove entries; read them with :meth:`items` and take differences.
        """
        self._check_open()
        if self.map_type not in MapType.HASHES:
            raise TypeError(f"map {self.name}: pop_all needs a hash map; read arrays with items()")
        raw: list[tuple[bytes, bytes]] | None = None
        if self._batch_ok:
            raw = self._batch(delete=True)
        if raw is None:
            so = libbpf.lib()
            raw = []
            for key in self._raw_keys():
                v = ctypes.create_string_buffer(self._value_bytes)
                ret = so.bpf_map_lookup_and_delete_elem(self.fd, key, v)
                if ret in (-errno.EINVAL, -errno.EOPNOTSUPP, -_ENOTSUPP):  # before Linux 5.14
                    ret = so.bpf_map_lookup_elem(self.fd, key, v)
                    if ret == 0:
                        so.bpf_map_delete_elem(self.fd, key)
                if ret == 0:
                    raw.append((key, v.raw))
        return [(self._decode_key(k), self._decode_value(v)) for k, v in raw]


# --- ring buffers -------------------------------------------------------------------------


class RingBuffer:
    """A consumer of one BPF ring buffer. ``callback(record: bytes)`` runs inside :meth:`poll`.

    A callback exception does not stop polling: it is counted in ``errors`` (the probe's decode
    error metric) and the latest one kept in ``last_error``.
    """

    def __init__(self, name: str, map_fd: int, callback: Callable[[bytes], None]) -> None:
        self.name = name
        self.received = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._callback = callback
        self._lock = threading.Lock()
        self._sample_fn = libbpf.SAMPLE_FN(self._on_sample)  # referenced while the ring lives
        self._ptr: int | None = check_ptr(
            libbpf.lib().ring_buffer__new(map_fd, self._sample_fn, None, None),
            f"ring buffer {name}",
        )

    def _on_sample(self, _ctx: int | None, data: int, size: int) -> int:
        self.received += 1
        try:
            self._callback(ctypes.string_at(data, size))
        except Exception as exc:  # counted, never raised into libbpf
            self.errors += 1
            self.last_error = exc
        return 0

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for records and consume them; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__poll(self._ptr, timeout_ms)
        if ret == -errno.EINTR:
            return 0
        return check_int(ret, f"ring buffer {self.name}: poll")

    def consume(self) -> int:
        """Consume what is there without waiting; the number consumed."""
        with self._lock:
            if self._ptr is None:
                raise RuntimeError(f"ring buffer {self.name}: closed")
            ret = libbpf.lib().ring_buffer__consume(self._ptr)
        return check_int(ret, f"ring buffer {self.name}: consume")

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records arrive (for selectors)."""
        if self._ptr is None:
            raise RuntimeError(f"ring buffer {self.name}: closed")
        return libbpf.lib().ring_buffer__epoll_fd(self._ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Free the consumer; waits for a poll in progress. Idempotent."""
        with self._lock:
            if self._ptr is not None:
                libbpf.lib().ring_buffer__free(self._ptr)
                self._ptr = None
