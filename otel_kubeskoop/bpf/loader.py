# SPDX-License-Identifier: Apache-2.0
"""Load a compiled BPF object: open -> settings -> choose attach points -> load -> attach -> close.

The libbpf-tools lifecycle, driven from Python through :mod:`.libbpf`:

1. **open** the ``.bpf.o``; check that every program a plan names exists with the section its
   attach point implies (section names are an API); apply ``max_entries`` overrides and write
   ``const volatile`` settings (``targ_*``) into ``.rodata``, at offsets read from the BTF libbpf
   fixed up at open.
2. **choose**, for each logical hook, the first :class:`~.attach.Candidate` of its
   :class:`~.attach.AttachPlan` whose kernel feature is present
   (:class:`~.features.KernelFeatures`; :func:`~.attach.choose` is pure), and turn autoload off
   for every other program, so that the verifier never sees a program we will not attach.
3. **load**. If the kernel rejects a chosen program (fentry gets EPERM on some kernels; a BTF
   tracepoint may have other arguments on an old one), that candidate is marked rejected and the
   object is opened again and loaded with the hook's next candidate. When a hook has no candidate
   left, :class:`~otel_kubeskoop.probe.Unavailable` carries libbpf's last log lines (the verifier's
   verdict).
4. **attach** each chosen program (a failure falls back the same way).
5. read maps (:class:`~.maps.BPFMap`) and ring buffers (:class:`~.ringbuf.RingBuffer`) while
   attached.
6. **close**: free ring buffers, destroy links, close the object. Idempotent, also run when the
   object is garbage-collected.

A :class:`BPFObject` is used from one thread at a time, except :meth:`RingBuffer.poll`, which may
run on a thread of its own: :meth:`BPFObject.close` waits for a poll in progress to return.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from otel_kubeskoop.bpf import attach, libbpf, settings
from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf.attach import AttachKind, AttachPlan, AttachPoint, Candidate, Features, choose
from otel_kubeskoop.bpf.features import KernelFeatures
from otel_kubeskoop.bpf.libbpf import MapType, check_int, check_ptr
from otel_kubeskoop.bpf.maps import BPFMap
from otel_kubeskoop.bpf.objects import object_path
from otel_kubeskoop.bpf.ringbuf import RingBuffer
from otel_kubeskoop.bpf.settings import Setting
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.bpf.stats import recursion_misses
from otel_kubeskoop.probe import Unavailable

__all__ = ["BPFObject", "Setting"]

_log = logging.getLogger(__name__)

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




class BPFObject:
    """One compiled BPF object and the programs, maps and ring buffers it has while attached.

    ``plans``: one :class:`AttachPlan` per hook. ``rodata``: ``const volatile`` settings by name;
    an int or bool is encoded with the variable's own size and signedness (from BTF), bytes must
    have exactly its size. ``max_entries``: map sizes to change before load (ring buffer bytes).
    ``load_only``: programs loaded but attached by the caller through their fds
    (:meth:`program_fds`), such as TC classifiers (``SEC("tc")``, :mod:`otel_kubeskoop.bpf.tc`).
    :meth:`of` takes the plans and load-only programs from the object's generated spec.
    ``partial``: a hook with no usable candidate is left out (why: :attr:`unavailable`) instead
    of failing the whole object, whose other hooks serve other probes (a shared object,
    :mod:`.shared`).
    """

    @classmethod
    def of(
        cls,
        spec: ObjectSpec,
        rodata: Mapping[str, Setting] | None = None,
        max_entries: Mapping[str, int] | None = None,
        features: Features | None = None,
        path: str | None = None,
        partial: bool = False,
    ) -> BPFObject:
        """The object ``spec`` describes (``otel_kubeskoop/bpf/generated/<stem>.py``), found in
        the package unless ``path`` is given; attach plans by the naming convention."""
        return cls(
            path or object_path(spec.name),
            attach.plans(spec),
            rodata=rodata,
            max_entries=max_entries,
            features=features,
            load_only=attach.unplanned(spec),
            partial=partial,
        )

    def __init__(
        self,
        path: str,
        plans: Iterable[AttachPlan],
        rodata: Mapping[str, Setting] | None = None,
        max_entries: Mapping[str, int] | None = None,
        features: Features | None = None,
        load_only: Iterable[str] = (),
        partial: bool = False,
    ) -> None:
        self.path = path
        self.name = os.path.basename(path).removesuffix(".bpf.o")
        self.plans = tuple(plans)
        self._plans = {p.hook: p for p in self.plans}
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
        self.partial = partial
        #: hook -> why it has no program (``partial`` objects only)
        self.unavailable: dict[str, str] = {}
        self._attached: set[str] = set()
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

    def attach(self, hooks: Iterable[str] | None = None) -> None:
        """Attach the chosen programs of ``hooks`` (default: every hook); a failing candidate
        falls back like a failed load. Once attached, attaching more hooks has no fallback (the
        object is not reloaded under the programs already attached)."""
        if self._state in ("new", "opened"):
            self.load()
        if self._state == "attached":
            self._attach_more(set(self._choice) if hooks is None else set(hooks))
            return
        self._require("loaded")
        began = time.perf_counter()
        try:
            while not self._attach_all(None if hooks is None else set(hooks)):
                # A candidate failed to attach: reload without it, then attach again.
                self._res.release()
                self._attached.clear()
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
                    + libbpf.log_tail(lines)
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

    def hook_fds(self) -> dict[str, int]:
        """Each attached hook -> the fd of its program."""
        fds = self.program_fds()
        return {hook: fds[c.program] for hook, c in self._choice.items()
                if hook in self._attached and c.program in fds}

    def misses(self) -> dict[str, int]:
        """Loaded programs by name -> runs the kernel skipped as recursive (where it counts them)."""
        out = {}
        for name, fd in self.program_fds().items():
            got = recursion_misses(fd)
            if got is not None:
                out[name] = got
        return out

    def map_names(self) -> list[str]:
        """Every map in the object, including libbpf's internal ones (``.rodata``...)."""
        so, names, m = libbpf.lib(), [], None
        while m := so.bpf_object__next_map(self._res.obj, m):
            names.append(so.bpf_map__name(m).decode())
        return names

    def _btf(self) -> btf_mod.BTF:
        """The object's BTF as libbpf fixed it up at open (data section offsets filled in)."""
        handle = check_ptr(libbpf.lib().bpf_object__btf(self._res.obj), f"{self.name}: object BTF")
        return btf_mod.BTF(handle, self.path, owner=self._res)

    def _write_rodata(self) -> None:
        size = ctypes.c_size_t()
        base = check_ptr(
            libbpf.lib().bpf_map__initial_value(self._find_map(".rodata"), ctypes.byref(size)),
            f"{self.name}: .rodata initial value",
        )
        data = (ctypes.c_char * size.value).from_address(base)
        settings.patch(self._btf(), self.name, ".rodata", memoryview(data).cast("B"), self.rodata)

    def write_globals(self, values: Mapping[str, Setting]) -> None:
        """Write ``.data``/``.bss`` variables of the loaded object: settings its programs read
        while attached (:func:`.settings.patch_sections`)."""
        if self._state not in ("loaded", "attached"):
            raise RuntimeError(f"{self.name}: globals exist once loaded (is {self._state})")
        settings.patch_sections(self._btf(), self.name, values,
                                lambda section: self.map(section, ctypes.c_uint32))

    def _load(self) -> None:
        so = libbpf.lib()
        planned = {prog for plan in self.plans for prog in plan.programs} | set(self.load_only)
        while True:
            self._choice = {}
            for plan in self.plans:
                if plan.hook in self.unavailable:
                    continue
                try:
                    self._choice[plan.hook] = choose(plan, self.features, self.rejected)
                except Unavailable as exc:
                    if not self.partial:
                        raise Unavailable(f"{self.name}: {exc}") from None
                    self.unavailable[plan.hook] = str(exc)
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
            failed = libbpf.blamed_program(lines, chosen_programs)
            hook = next((h for h, c in self._choice.items() if c.program == failed), None)
            reason = f"load failed: {errno.errorcode.get(err, err)} ({libbpf.strerror(err)})"
            if failed is not None and hook is not None and self._has_alternative(hook, failed):
                _log.debug("%s: %s %s; falling back", self.name, failed, reason)
                self.rejected[failed] = reason
                self._reopen()
                continue
            if failed is None or hook is None:
                raise Unavailable(f"{self.name}: {reason}\n{libbpf.log_tail(lines)}")
            self.rejected[failed] = reason
            if self.partial:
                self.unavailable[hook] = f"{self._why_not(hook)}\n{libbpf.log_tail(lines)}"
                self._reopen()
                continue
            raise Unavailable(f"{self.name}: {self._why_not(hook)}\n{libbpf.log_tail(lines)}")

    def _why_not(self, hook: str) -> str:
        return attach.why_not(self._plans[hook], self.features, self.rejected)

    def _has_alternative(self, hook: str, failed: str) -> bool:
        return attach.has_alternative(self._plans[hook], self.features, self.rejected, failed)

    def _attach_all(self, hooks: set[str] | None) -> bool:
        """Attach the chosen programs of ``hooks`` (None: all); False after rejecting one that
        failed but has a fallback."""
        for hook, candidate in self._choice.items():
            if hooks is not None and hook not in hooks:
                continue
            reason = self._attach_one(candidate)
            if reason is None:
                self._attached.add(hook)
                continue
            self.rejected[candidate.program] = reason
            if self._has_alternative(hook, candidate.program):
                _log.debug("%s: %s %s; falling back", self.name, candidate.program, reason)
                return False
            raise Unavailable(f"{self.name}: {self._why_not(hook)}")
        return True

    def _attach_more(self, hooks: set[str]) -> None:
        """Attach ``hooks`` to an attached object, without falling back."""
        for hook in sorted(hooks - self._attached):
            if hook not in self._choice:
                raise Unavailable(f"{self.name}: {self.unavailable.get(hook, f'no hook {hook!r}')}")
            candidate = self._choice[hook]
            reason = self._attach_one(candidate)
            if reason is not None:
                self.rejected[candidate.program] = reason
                raise Unavailable(f"{self.name}: {candidate.program}: {reason}")
            self._attached.add(hook)

    @property
    def attached_hooks(self) -> frozenset[str]:
        """The hooks whose programs are attached."""
        return frozenset(self._attached)

    def _attach_one(self, candidate: Candidate) -> str | None:
        """Attach one program; None when attached, else why not (with libbpf's log)."""
        so = libbpf.lib()
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
            return None
        return (f"attach failed: {errno.errorcode.get(err, err)} ({libbpf.strerror(err)})\n"
                + libbpf.log_tail(lines))

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

    def ringbuf(self, name: str, callback: Callable[[Any], None], *, batch: bool = False) -> RingBuffer:
        """A consumer of ring buffer ``name``; ``callback(record)`` runs in ``poll()`` (``batch``:
        ``callback(records)``, :class:`RingBuffer`)."""
        if self._state not in ("loaded", "attached"):
            raise RuntimeError(f"{self.name}: ring buffers exist once loaded (is {self._state})")
        so = libbpf.lib()
        ptr = self._find_map(name)
        if so.bpf_map__type(ptr) != MapType.RINGBUF:
            raise TypeError(f"{self.name}: map {name!r} is not a ring buffer")
        ringbuf = RingBuffer(name, check_int(so.bpf_map__fd(ptr), f"{self.name}: fd of {name}"), callback,
                             batch=batch)
        self._res.ringbufs.append(ringbuf)
        return ringbuf

    def close_ringbuf(self, ringbuf: RingBuffer) -> None:
        """Free one consumer :meth:`ringbuf` made, before the object closes."""
        ringbuf.close()
        if ringbuf in self._res.ringbufs:
            self._res.ringbufs.remove(ringbuf)
