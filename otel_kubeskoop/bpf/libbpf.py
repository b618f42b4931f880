# SPDX-License-Identifier: Apache-2.0
"""A small ctypes binding to the system ``libbpf.so.1`` (Debian: libbpf1; 1.1 or newer).

Only what :mod:`otel_kubeskoop.bpf` needs: objects, programs, maps, links, ring buffers, BTF and
libbpf's log. No compiler and no generated skeleton at run time: the loader opens the ``.bpf.o``
files built by ``make -C bpf``. API reference: https://libbpf.readthedocs.io/en/latest/api.html.

Error convention (libbpf 1.x): functions returning a pointer return NULL and set ``errno``;
functions returning ``int`` return ``-errno``. :func:`check_ptr` and :func:`check_int` turn both
into :class:`LibbpfError`.

libbpf's log goes through one process-wide print callback, installed on first use of :func:`lib`
(never at import). It forwards every line to the ``otel_kubeskoop.bpf.libbpf`` logger, except on
a thread inside :func:`captured_log`, where warnings and info lines are collected instead (and
logged at DEBUG) so that the loader can put them into an ``Unavailable`` message or drop the
noise of an expected fallback.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import functools
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

__all__ = [
    "BPF_ANY",
    "LIBBPF_DEBUG",
    "LIBBPF_INFO",
    "LIBBPF_WARN",
    "BatchOpts",
    "LibbpfError",
    "MapType",
    "SAMPLE_FN",
    "TcHook",
    "TcOpts",
    "blamed_program",
    "captured_log",
    "check_int",
    "check_ptr",
    "lib",
    "log_tail",
    "version",
]

_log = logging.getLogger("otel_kubeskoop.bpf.libbpf")

LIBBPF_SONAME = "libbpf.so.1"

# enum libbpf_print_level
LIBBPF_WARN = 0
LIBBPF_INFO = 1
LIBBPF_DEBUG = 2
_LEVELS = {LIBBPF_WARN: logging.WARNING, LIBBPF_INFO: logging.INFO, LIBBPF_DEBUG: logging.DEBUG}

# bpf_map_update_elem flags
BPF_ANY = 0


class MapType:
    """``enum bpf_map_type`` values the loader treats specially (``include/uapi/linux/bpf.h``)."""

    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    RINGBUF = 27

    PERCPU = frozenset({PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH})
    HASHES = frozenset({HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH})
    ARRAYS = frozenset({ARRAY, PERCPU_ARRAY})


class BatchOpts(ctypes.Structure):
    """``struct bpf_map_batch_opts`` (LIBBPF_OPTS: ``sz`` first, set to the size we know)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]

    def __init__(self) -> None:
        super().__init__(ctypes.sizeof(BatchOpts), 0, 0)


class TcHook(ctypes.Structure):
    """``struct bpf_tc_hook`` (``sz`` first, as LIBBPF_OPTS sets it): an interface's clsact hook."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),  # enum bpf_tc_attach_point: BPF_TC_INGRESS | BPF_TC_EGRESS
        ("parent", ctypes.c_uint32),
    ]

    def __init__(self, ifindex: int, attach_point: int) -> None:
        super().__init__(ctypes.sizeof(TcHook), ifindex, attach_point, 0)


class TcOpts(ctypes.Structure):
    """``struct bpf_tc_opts``: one cls_bpf filter (direct-action) on a hook."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),  # BPF_TC_F_REPLACE
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    ]

    def __init__(self, handle: int, priority: int, prog_fd: int = 0, flags: int = 0) -> None:
        super().__init__(ctypes.sizeof(TcOpts), prog_fd, flags, 0, handle, priority)


# enum bpf_tc_attach_point, enum bpf_tc_flags
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
BPF_TC_F_REPLACE = 1 << 0


class LibbpfError(OSError):
    """A libbpf call failed; ``errno`` is set and the message names the call."""


# int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size)
SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
# int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *fmt, va_list ap)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_U32 = ctypes.c_uint32
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    # objects
    "bpf_object__open_file": (_P, [_S, _P]),
    "bpf_object__load": (_I, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__name": (_S, [_P]),
    "bpf_object__btf": (_P, [_P]),
    # programs
    "bpf_object__find_program_by_name": (_P, [_P, _S]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_program__name": (_S, [_P]),
    "bpf_program__section_name": (_S, [_P]),
    "bpf_program__set_autoload": (_I, [_P, ctypes.c_bool]),
    "bpf_program__autoload": (ctypes.c_bool, [_P]),
    "bpf_program__fd": (_I, [_P]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_program__attach_trace": (_P, [_P]),
    "bpf_program__attach_tracepoint": (_P, [_P, _S, _S]),
    "bpf_program__attach_raw_tracepoint": (_P, [_P, _S]),
    "bpf_program__attach_kprobe": (_P, [_P, ctypes.c_bool, _S]),
    "bpf_link__destroy": (_I, [_P]),
    # maps (object side)
    "bpf_object__find_map_by_name": (_P, [_P, _S]),
    "bpf_object__find_map_fd_by_name": (_I, [_P, _S]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_map__name": (_S, [_P]),
    "bpf_map__fd": (_I, [_P]),
    "bpf_map__type": (_I, [_P]),
    "bpf_map__key_size": (_U32, [_P]),
    "bpf_map__value_size": (_U32, [_P]),
    "bpf_map__max_entries": (_U32, [_P]),
    "bpf_map__set_max_entries": (_I, [_P, _U32]),
    "bpf_map__initial_value": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "bpf_map__is_internal": (ctypes.c_bool, [_P]),
    "bpf_map__btf_key_type_id": (_U32, [_P]),
    "bpf_map__btf_value_type_id": (_U32, [_P]),
    "libbpf_bpf_map_type_str": (_S, [_I]),
    # maps (fd side, the bpf(2) syscall wrappers)
    "bpf_map_lookup_elem": (_I, [_I, _P, _P]),
    "bpf_map_update_elem": (_I, [_I, _P, _P, ctypes.c_uint64]),
    "bpf_map_delete_elem": (_I, [_I, _P]),
    "bpf_map_get_next_key": (_I, [_I, _P, _P]),
    "bpf_map_lookup_and_delete_elem": (_I, [_I, _P, _P]),
    "bpf_map_lookup_batch": (_I, [_I, _P, _P, _P, _P, ctypes.POINTER(_U32), _P]),
    "bpf_map_lookup_and_delete_batch": (_I, [_I, _P, _P, _P, _P, ctypes.POINTER(_U32), _P]),
    # BTF (the object's, the kernel's, or bytes): the handle and its type records; the records'
    # layout (struct btf_type and what follows it) is read by otel_kubeskoop.bpf.btf, since
    # libbpf's accessors for it (btf_kind(), btf_members()...) are inline functions in btf.h
    "btf__new": (_P, [_P, _U32]),
    "btf__parse": (_P, [_S, _P]),
    "btf__load_vmlinux_btf": (_P, []),
    "btf__free": (None, [_P]),
    "btf__type_cnt": (_U32, [_P]),
    "btf__type_by_id": (_P, [_P, _U32]),
    "btf__find_by_name_kind": (_I, [_P, _S, _U32]),
    "btf__name_by_offset": (_S, [_P, _U32]),
    "btf__resolve_type": (_I, [_P, _U32]),
    "btf__resolve_size": (ctypes.c_long, [_P, _U32]),
    # ring buffers
    "ring_buffer__new": (_P, [_I, SAMPLE_FN, _P, _P]),
    "ring_buffer__poll": (_I, [_P, _I]),
    "ring_buffer__consume": (_I, [_P]),
    "ring_buffer__epoll_fd": (_I, [_P]),
    "ring_buffer__free": (None, [_P]),
    # program statistics (run count and time; kernel 5.8+)
    "bpf_enable_stats": (_I, [_I]),
    "bpf_obj_get_info_by_fd": (_I, [_I, _P, ctypes.POINTER(_U32)]),
    # TC (clsact) hooks and filters, in the calling thread's network namespace (libbpf 0.4+);
    # struct arguments are :class:`TcHook` and :class:`TcOpts`
    "bpf_tc_hook_create": (_I, [_P]),
    "bpf_tc_hook_destroy": (_I, [_P]),
    "bpf_tc_attach": (_I, [_P, _P]),
    "bpf_tc_detach": (_I, [_P, _P]),
    "bpf_tc_query": (_I, [_P, _P]),
    "bpf_prog_get_fd_by_id": (_I, [_U32]),
    # bpf(BPF_PROG_LOAD) of raw instructions (libbpf 0.7+): type, name, license, insns, count, opts
    "bpf_prog_load": (_I, [_I, _S, _S, _P, ctypes.c_size_t, _P]),
    # library
    "libbpf_set_print": (_P, [_PRINT_FN]),
    "libbpf_num_possible_cpus": (_I, []),
    "libbpf_major_version": (_U32, []),
    "libbpf_minor_version": (_U32, []),
    "libbpf_strerror": (_I, [_I, ctypes.c_char_p, ctypes.c_size_t]),
}

# Messages on one thread go to a list while captured_log() runs there.
_capture = threading.local()
_print_callback = None  # the installed callback; a module reference keeps it from being collected


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.vasprintf.restype = ctypes.c_int
    libc.vasprintf.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_void_p]
    libc.free.restype = None
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _format(fmt: int, ap: int) -> str:
    """printf ``fmt`` with its ``va_list``: vasprintf allocates exactly what the text needs
    (a verifier log can be megabytes); the list can only be walked once."""
    libc = _libc()
    out = ctypes.c_void_p()
    n = libc.vasprintf(ctypes.byref(out), fmt, ap)
    if n < 0 or not out.value:
        return "<libbpf message could not be formatted>"
    try:
        return ctypes.string_at(out.value, n).decode(errors="replace")
    finally:
        libc.free(out.value)


def _on_print(level: int, fmt: int, ap: int) -> int:
    try:
        captured = getattr(_capture, "lines", None)
        py_level = _LEVELS.get(level, logging.DEBUG)
        if level == LIBBPF_DEBUG or captured is None:
            if not _log.isEnabledFor(py_level):
                return 0
            _log.log(py_level, "%s", _format(fmt, ap).rstrip("\n"))
            return 0
        text = _format(fmt, ap).rstrip("\n")
        captured.append(text)
        _log.debug("%s", text)
    except Exception:  # never let an exception cross back into C
        pass
    return 0


@functools.cache
def lib() -> ctypes.CDLL:
    """``libbpf.so.1`` with prototypes declared and our print callback installed.

    Raises ``OSError`` when the library is not installed (Debian package ``libbpf1``).
    """
    global _print_callback
    so = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(so, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _print_callback = _PRINT_FN(_on_print)
    so.libbpf_set_print(_print_callback)
    return so


def version() -> str:
    so = lib()
    return f"{so.libbpf_major_version()}.{so.libbpf_minor_version()}"


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """Collect libbpf's warning and info messages on this thread instead of logging them."""
    outer = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        if outer is not None:
            outer.extend(lines)
        _capture.lines = outer


#: Lines of libbpf's log kept in an error message.
LOG_TAIL_LINES = 25
_PROG_IN_LOG = re.compile(r"prog '([^']+)'")


def log_tail(lines: Sequence[str], limit: int = LOG_TAIL_LINES) -> str:
    """The last ``limit`` lines of a :func:`captured_log`, for an error message."""
    flat = [line for text in lines for line in text.splitlines() if line.strip()]
    shown = flat[-limit:]
    if len(flat) > limit:
        shown.insert(0, f"... ({len(flat) - limit} earlier lines)")
    return "\n".join(shown)


def blamed_program(lines: Sequence[str], candidates: Iterable[str]) -> str | None:
    """The program of ``candidates`` a :func:`captured_log` blames for a failure (the last one
    it names)."""
    wanted = set(candidates)
    for text in reversed(lines):
        for name in reversed(_PROG_IN_LOG.findall(text)):
            if name in wanted:
                return name
    return None


def strerror(err: int) -> str:
    """libbpf's text for an error number (knows libbpf's own LIBBPF_ERRNO__* codes too)."""
    buf = ctypes.create_string_buffer(256)
    if lib().libbpf_strerror(err, buf, len(buf)) == 0:
        return buf.value.decode(errors="replace")
    return os.strerror(err)


def _error(err: int, what: str) -> LibbpfError:
    name = errno_mod.errorcode.get(err, str(err))
    return LibbpfError(err, f"{what}: {name} ({strerror(err)})")


def check_ptr(ptr: int | None, what: str) -> int:
    """The pointer, or :class:`LibbpfError` from ``errno`` when libbpf returned NULL."""
    if not ptr:
        raise _error(ctypes.get_errno() or errno_mod.EINVAL, what)
    return ptr


def check_int(ret: int, what: str) -> int:
    """The non-negative result, or :class:`LibbpfError` for a ``-errno`` result."""
    if ret < 0:
        raise _error(-ret, what)
    return ret
