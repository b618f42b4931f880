# SPDX-License-Identifier: Apache-2.0
"""Attach plans: where a hook's programs attach, in order of preference, and the choice per kernel.

A plan is read from the object's programs, never written by hand. The naming convention
(``bpf/README.md``, "Programs and attach plans"): a program in a section ``<kind>/<target>`` of
one of the :class:`AttachKind` kinds is named ``<object>_<hook>[_<detail>]_<kind word>``
(:data:`KIND_WORDS`); the programs of one hook are its candidates, tried in the order they appear
in the object (the ``.bpf.c``), and hooks come in the order of their first program. A program in
any other section (``SEC("tc")``) is in no plan: it is loaded and its caller attaches it
(:func:`unplanned`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from otel_kubeskoop.bpf.spec import ObjectSpec
from otel_kubeskoop.probe import Unavailable

__all__ = [
    "KIND_WORDS",
    "AttachKind",
    "AttachPlan",
    "AttachPoint",
    "Candidate",
    "Features",
    "choose",
    "has_alternative",
    "plans",
    "unplanned",
    "why_not",
]


class AttachKind(enum.StrEnum):
    """Where a program attaches, in order of preference, and its target:

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

#: the last word of the name of a program attaching to each kind of point
KIND_WORDS = {
    AttachKind.TP_BTF: "btf",
    AttachKind.TRACEPOINT: "tp",
    AttachKind.FENTRY: "fentry",
    AttachKind.KPROBE: "kprobe",
    AttachKind.FEXIT: "fexit",
    AttachKind.KRETPROBE: "kretprobe",
}


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

    @classmethod
    def of_section(cls, section: str) -> AttachPoint | None:
        """The point a ``SEC("<kind>/<target>")`` names; None for other sections (``tc``)."""
        kind, _, target = section.partition("/")
        if kind not in AttachKind.__members__.values():
            return None
        return cls(kind, target)  # type: ignore[arg-type]

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


def _hook(stem: str, program: str, point: AttachPoint) -> str:
    """The hook a program is a candidate for, by the naming convention (ValueError if broken)."""
    word = KIND_WORDS[AttachKind(point.kind)]
    prefix, suffix = f"{stem}_", f"_{word}"
    middle = program[len(prefix) : -len(suffix)]
    if not (program.startswith(prefix) and program.endswith(suffix) and middle):
        raise ValueError(
            f"{stem}: program {program!r} in section {point.section!r} is not named "
            f"{stem}_<hook>[_<detail>]_{word} (bpf/README.md)"
        )
    return middle.partition("_")[0]


def plans(spec: ObjectSpec) -> tuple[AttachPlan, ...]:
    """The attach plans the programs of an object state (``spec.programs``: name -> section, in
    object order), by the naming convention."""
    hooks: dict[str, list[Candidate]] = {}
    for program, section in spec.programs.items():
        point = AttachPoint.of_section(section)
        if point is not None:
            hooks.setdefault(_hook(spec.name, program, point), []).append(Candidate(program, point))
    return tuple(AttachPlan(hook, tuple(candidates)) for hook, candidates in hooks.items())


def unplanned(spec: ObjectSpec) -> tuple[str, ...]:
    """The programs in no attach plan (``SEC("tc")``...): loaded, attached by their caller."""
    return tuple(
        p for p, section in spec.programs.items() if AttachPoint.of_section(section) is None
    )


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


def why_not(plan: AttachPlan, features: Features, rejected: Mapping[str, str]) -> str:
    """Why no candidate of ``plan`` is left, candidate by candidate."""
    try:
        choose(plan, features, rejected)
    except Unavailable as exc:
        return str(exc)
    return f"hook {plan.hook!r} failed"


def has_alternative(plan: AttachPlan, features: Features, rejected: Mapping[str, str],
                    failed: str) -> bool:
    """Whether ``plan`` has a candidate left once ``failed`` is rejected too."""
    try:
        choose(plan, features, {**rejected, failed: "rejected"})
    except Unavailable:
        return False
    return True
