# SPDX-License-Identifier: Apache-2.0
"""A BPF object shared by several probes (``bpf/datapath.bpf.c``): one program per kernel hook,
running the handler of each probe whose bit is set in the object's ``<object>_enabled``.

What the object states (its generated module, ``otel_kubeskoop/bpf/generated/<object>.py``) is
all this reads:

- ``enum <object>_probe``: a probe's bit (``DATAPATH_PACKETLOSS = 0``: bit 0 is packetloss);
- ``enum <object>_slot``: ``DATAPATH_<PROBE>_<HOOK>`` for each hook a probe runs on, which is also
  the index of its cost in ``<object>_costs`` (runs and ns per CPU, counted while
  ``<object>_stats`` is on);
- each probe's maps and settings, named ``<probe>_<name>``; a probe sees them without the prefix
  through its :class:`Member` (the generated ``<probe>.py`` states that view).

:class:`SharedObject` loads the object when its first probe starts, attaches the hooks the
probes that have started need (a hook stays attached until the object closes), writes a probe's
settings before setting its bit, clears the bit when the probe stops, and closes everything when
the last one stops. So a probe turned on or off by a reload changes one bit: the other probes'
programs are neither detached nor reloaded, and their maps keep counting. :class:`SharedObjects`
is the set of them one runtime holds.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from otel_kubeskoop.bpf.attach import KIND_WORDS, AttachKind, AttachPlan, AttachPoint, plans
from otel_kubeskoop.bpf.codegen import class_name
from otel_kubeskoop.bpf.loader import BPFObject, Setting
from otel_kubeskoop.bpf.maps import BPFMap
from otel_kubeskoop.bpf.ringbuf import RingBuffer
from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.bpf.stats import recursion_misses
from otel_kubeskoop.probe import Unavailable

__all__ = ["Member", "SharedObject", "SharedObjects", "member_plans"]

log = logging.getLogger(__name__)

#: a probe's setting: when it started (CLOCK_MONOTONIC ns). A probe stopped and started again
#: while the object stays loaded finds its maps as it left them; start records older than this
#: are not used (its in-flight tables, bpf/<probe>.bpf.h).
SINCE = "targ_since_ns"


def _contract(host: str) -> Any:
    return importlib.import_module(f"otel_kubeskoop.bpf.generated.{host}")


def _handler(probe: str, hook: str, point: AttachPoint) -> str:
    """A probe's handler on a hook, named as the kernel's statistics name a program of its own."""
    return f"{probe}_{hook}_{KIND_WORDS[AttachKind(point.kind)]}"


def member_plans(member: ObjectSpec) -> tuple[AttachPlan, ...]:
    """The attach plans of the hooks a probe of a shared object runs on (all of an object's
    own)."""
    if member.host is None:
        return plans(member)
    shared = SharedObject(_contract(member.host).OBJECT)
    return tuple(p for p in plans(shared.spec) if p.hook in shared.hooks[member.name])


class SharedObject:
    """One shared object (``spec``, its generated ``OBJECT``) and the probes that use it."""

    def __init__(self, spec: ObjectSpec, stats: bool = False) -> None:
        self.spec = spec
        self.stats = stats
        module = _contract(spec.name)
        prefix = f"{spec.name.upper()}_"
        self.bits = {m.name.removeprefix(prefix).lower(): m.value
                     for m in getattr(module, class_name(f"{spec.name}_probe"))
                     if not m.name.startswith(f"{prefix}_")}
        #: probe -> {hook: cost slot}
        self.hooks: dict[str, dict[str, int]] = {probe: {} for probe in self.bits}
        for slot in getattr(module, class_name(f"{spec.name}_slot")):
            rest = slot.name.removeprefix(prefix).lower()
            probe = next((p for p in self.bits if rest.startswith(f"{p}_")), None)
            if probe is not None:
                self.hooks[probe][rest.removeprefix(f"{probe}_")] = slot.value
        self.obj: BPFObject | None = None
        self.users: dict[str, Member] = {}

    @property
    def enabled(self) -> int:
        return sum(1 << self.bits[probe] for probe in self.users)

    def join(self, probe: str, settings: Mapping[str, Setting], features: Any = None) -> Member:
        """Start ``probe``: load the object if it is the first, attach the hooks it needs, write
        its ``settings`` (without the ``<probe>_`` prefix), then set its bit."""
        if probe not in self.bits:
            raise ValueError(f"{self.spec.name}: no probe {probe!r} (has {sorted(self.bits)})")
        if probe in self.users:
            raise RuntimeError(f"{self.spec.name}: {probe} has started already")
        first = self.obj is None
        if first:
            self.obj = BPFObject.of(self.spec, features=features, partial=True)
            self.obj.load()
            log.debug("%s loaded for %s; hooks without a program: %s", self.spec.name, probe,
                      sorted(self.obj.unavailable) or "none")
        obj = self.obj
        try:
            hooks = set(self.hooks[probe])
            missing = hooks & set(obj.unavailable)
            if missing:
                raise Unavailable(f"{probe}: " + "; ".join(obj.unavailable[h] for h in sorted(missing)))
            obj.attach(hooks)
            values = {f"{probe}_{name}": value for name, value in settings.items()}
            since = f"{probe}_{SINCE}"
            if since in self.spec.globals:  # its in-flight starts from before are stale
                values[since] = time.monotonic_ns()  # bpf_ktime_get_ns()'s clock
            obj.write_globals(values)
            member = Member(self, probe)
            self.users[probe] = member
            self._write_state()
        except BaseException:
            if first:
                self.close()
            raise
        return member

    def leave(self, member: Member) -> None:
        """Stop a probe: clear its bit, close its ring buffers; close the object after the last."""
        if self.users.get(member.probe) is not member:
            return
        del self.users[member.probe]
        if self.obj is None:
            return
        if not self.users:
            self.close()
            return
        self._write_state()
        for ring in member.rings:
            self.obj.close_ringbuf(ring)

    def set_stats(self, on: bool) -> None:
        self.stats = on
        if self.obj is not None:
            self._write_state()

    def _write_state(self) -> None:
        if self.obj is not None:
            name = self.spec.name
            self.obj.write_globals({f"{name}_enabled": self.enabled, f"{name}_stats": self.stats})

    def close(self) -> None:
        obj, self.obj = self.obj, None
        self.users.clear()
        if obj is not None:
            obj.close()
            log.debug("%s closed", self.spec.name)

    def costs(self, probe: str) -> dict[str, tuple[int, int]]:
        """``<probe>_<hook>_<kind word>`` -> (runs, ns) of the probe's handler on each attached
        hook, as the kernel's statistics name a program of the probe's own and count it."""
        if self.obj is None:
            return {}
        name = self.spec.name
        cost = getattr(_contract(name), class_name(f"{name}_cost"))
        per_cpu = self.obj.map(f"{name}_costs", ctypes.c_uint32, cost, percpu="list")
        out = {}
        for hook, slot in self.hooks[probe].items():
            point = self.obj.chosen.get(hook)
            if point is None or hook not in self.obj.attached_hooks:
                continue
            cpus = per_cpu.lookup(slot) or []
            out[_handler(probe, hook, point)] = (sum(c.runs for c in cpus), sum(c.ns for c in cpus))
        return out

    def misses(self, probe: str) -> dict[str, int]:
        """The probe's handlers, named as in :meth:`costs` -> runs the kernel skipped of the shared
        program on each hook: a skipped run is lost to every probe on that hook."""
        if self.obj is None:
            return {}
        fds = self.obj.hook_fds()  # attached hooks only, each with its chosen attach point
        out = {}
        for hook in self.hooks[probe]:
            got = recursion_misses(fds[hook]) if hook in fds else None
            if got is not None:
                out[_handler(probe, hook, self.obj.chosen[hook])] = got
        return out


class Member:
    """One probe's view of a started :class:`SharedObject`, used as a probe uses its own
    :class:`~.loader.BPFObject`: maps and ring buffers by their names without the prefix, the
    attach points of its hooks; :meth:`close` stops the probe."""

    def __init__(self, host: SharedObject, probe: str) -> None:
        self.host = host
        self.probe = probe
        self.rings: list[RingBuffer] = []

    @property
    def _obj(self) -> BPFObject:
        if self.host.obj is None or self.host.users.get(self.probe) is not self:
            raise RuntimeError(f"{self.probe}: stopped")
        return self.host.obj

    @property
    def state(self) -> str:
        """The object's state while the probe uses it (``attached``), else ``closed``."""
        if self.host.obj is None or self.host.users.get(self.probe) is not self:
            return "closed"
        return self.host.obj.state

    @property
    def chosen(self) -> dict[str, AttachPoint]:
        return {hook: point for hook, point in self._obj.chosen.items()
                if hook in self.host.hooks[self.probe]}

    @property
    def rejected(self) -> dict[str, str]:
        """The candidates of its hooks that the kernel refused, and why."""
        obj, hooks = self._obj, self.host.hooks[self.probe]
        mine = {p for plan in obj.plans if plan.hook in hooks for p in plan.programs}
        return {program: why for program, why in obj.rejected.items() if program in mine}

    def map(self, name: str, key: Any = None, value: Any = None, **kwargs: Any) -> BPFMap:
        return self._obj.map(f"{self.probe}_{name}", key, value, **kwargs)

    def ringbuf(self, name: str, callback: Callable[[Any], None], *, batch: bool = False) -> RingBuffer:
        ring = self._obj.ringbuf(f"{self.probe}_{name}", callback, batch=batch)
        self.rings.append(ring)
        return ring

    def program_fds(self) -> dict[str, int]:
        """None of its own: the kernel's statistics count the shared programs (:meth:`costs`)."""
        return {}

    def costs(self) -> dict[str, tuple[int, int]]:
        return self.host.costs(self.probe)

    def misses(self) -> dict[str, int]:
        return self.host.misses(self.probe)

    def close(self) -> None:
        self.host.leave(self)


class SharedObjects:
    """The shared objects of one runtime, by name; ``stats``: whether their programs count each
    probe's cost (config ``bpfStats``)."""

    def __init__(self, stats: bool = False) -> None:
        self.stats = stats
        self._objects: dict[str, SharedObject] = {}

    def join(self, member: ObjectSpec, settings: Mapping[str, Setting],
             features: Any = None) -> Member:
        """Start the probe ``member`` (its generated view, ``member.host`` the object)."""
        if member.host is None:
            raise ValueError(f"{member.name}: not a probe of a shared object")
        shared = self._objects.get(member.host)
        if shared is None:
            shared = self._objects[member.host] = SharedObject(_contract(member.host).OBJECT,
                                                               self.stats)
        return shared.join(member.name, settings, features)

    def get(self, name: str) -> SharedObject | None:
        """The shared object ``name`` (None before a probe of it first started)."""
        return self._objects.get(name)

    def set_stats(self, on: bool) -> None:
        self.stats = on
        for shared in self._objects.values():
            shared.set_stats(on)
