# SPDX-License-Identifier: Apache-2.0
"""TC classifiers on an interface's clsact qdisc, through libbpf's ``bpf_tc_*`` API, in any
network namespace.

libbpf's TC calls (``bpf_tc_hook_create``, ``bpf_tc_attach``, ``bpf_tc_query``,
``bpf_tc_detach``, ``bpf_tc_hook_destroy``; libbpf 0.4+, https://libbpf.readthedocs.io) open a
netlink socket in the **calling thread's** network namespace for each call, so a batch of them
runs inside the target namespace through :func:`~otel_kubeskoop.topology.nsexec.run_in_netns`
(one short-lived thread that enters each namespace in turn), as
:mod:`otel_kubeskoop.netlink.sockets` does for its sockets. :mod:`otel_kubeskoop.bpf.tc_attach`
keeps a probe's filters in step with the namespace scan.

Filters are direct-action ``cls_bpf`` filters named by libbpf after their program
(``flow_ingress:[<id>]``), found again by their (handle, priority) pair: :func:`query` gives the
id of the program there, :func:`program_name` that program's name. :func:`filters` lists every
filter of a hook (its program's id included) through an ``RTM_GETTFILTER`` dump;
:func:`add_bpf_filter` adds one of any protocol, running for instance a :func:`load_passthrough`
program (what :mod:`otel_kubeskoop.bpf.tc_owner` marks its qdiscs with).

Everything here except :func:`program_id`, :func:`program_name` and :func:`load_passthrough`
must run in the interface's
namespace. The kernel's messages for expected answers ("Cannot find specified filter chain" when
a hook has no such filter) are kept out of the log
(:func:`~otel_kubeskoop.bpf.libbpf.captured_log`, at DEBUG).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import socket
import struct
from typing import TYPE_CHECKING, Literal

from otel_kubeskoop.bpf import btf as btf_mod
from otel_kubeskoop.bpf import libbpf
from otel_kubeskoop.bpf.libbpf import (
    BPF_TC_EGRESS,
    BPF_TC_F_REPLACE,
    BPF_TC_INGRESS,
    LibbpfError,
    TcHook,
    TcOpts,
    check_int,
)

if TYPE_CHECKING:  # the netlink decoders (and pyroute2) load when a dump is first made
    from otel_kubeskoop.netlink.tc import TcFilter

__all__ = [
    "Direction",
    "add_bpf_filter",
    "attach",
    "create_clsact",
    "destroy_clsact",
    "detach",
    "filters",
    "load_passthrough",
    "program_id",
    "program_name",
    "query",
]

Direction = Literal["ingress", "egress"]
_POINT = {"ingress": BPF_TC_INGRESS, "egress": BPF_TC_EGRESS}
#: the clsact qdisc's parent handles of its two hooks (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS...))
_PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}

#: linux/bpf.h: BPF_PROG_TYPE_SCHED_CLS; r0 = TC_ACT_UNSPEC (-1), exit (BPF_ALU64|BPF_MOV|BPF_K,
#: BPF_JMP|BPF_EXIT: include/uapi/linux/bpf_common.h)
_SCHED_CLS = 3
_PASSTHROUGH = struct.pack("=BBhi", 0xB7, 0, 0, -1) + struct.pack("=BBhi", 0x95, 0, 0, 0)
_NETLINK_TIMEOUT = 2.0


# --- hooks and filters (in the interface's namespace) ----------------------------------------


def create_clsact(ifindex: int) -> bool:
    """Add a clsact qdisc to the interface: True if this call made it, False if one was there."""
    hook = TcHook(ifindex, BPF_TC_INGRESS)
    with libbpf.captured_log():
        ret = libbpf.lib().bpf_tc_hook_create(ctypes.addressof(hook))
    if ret == -errno.EEXIST:
        return False
    check_int(ret, f"clsact qdisc on interface {ifindex}")
    return True


def destroy_clsact(ifindex: int) -> bool:
    """Remove the interface's clsact qdisc and every filter on it; False if there was none."""
    hook = TcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)
    with libbpf.captured_log():
        ret = libbpf.lib().bpf_tc_hook_destroy(ctypes.addressof(hook))
    if ret in (-errno.ENOENT, -errno.EINVAL, -errno.ENODEV):
        return False
    check_int(ret, f"removing the clsact qdisc of interface {ifindex}")
    return True


def attach(ifindex: int, direction: Direction, prog_fd: int, handle: int, priority: int) -> int:
    """Attach the program as the filter (handle, priority) of the hook, replacing what was there
    under that pair. Returns the attached program's id."""
    hook = TcHook(ifindex, _POINT[direction])
    opts = TcOpts(handle, priority, prog_fd=prog_fd, flags=BPF_TC_F_REPLACE)
    with libbpf.captured_log() as lines:
        ret = libbpf.lib().bpf_tc_attach(ctypes.addressof(hook), ctypes.addressof(opts))
    if ret < 0:
        detail = "; ".join(line.strip() for line in lines if line.strip())
        check_int(ret, f"attaching a TC {direction} filter to interface {ifindex}"
                  + (f" ({detail})" if detail else ""))
    return opts.prog_id


def query(ifindex: int, direction: Direction, handle: int, priority: int) -> int | None:
    """The id of the program of filter (handle, priority), or None when there is no such filter."""
    hook = TcHook(ifindex, _POINT[direction])
    opts = TcOpts(handle, priority)
    with libbpf.captured_log():
        ret = libbpf.lib().bpf_tc_query(ctypes.addressof(hook), ctypes.addressof(opts))
    if ret in (-errno.ENOENT, -errno.EINVAL):  # no filter there; EINVAL: no clsact qdisc
        return None
    check_int(ret, f"querying the TC {direction} filters of interface {ifindex}")
    return opts.prog_id


def detach(ifindex: int, direction: Direction, handle: int, priority: int) -> bool:
    """Remove filter (handle, priority); False if it was not there (or the interface is gone)."""
    hook = TcHook(ifindex, _POINT[direction])
    opts = TcOpts(handle, priority)
    with libbpf.captured_log():
        ret = libbpf.lib().bpf_tc_detach(ctypes.addressof(hook), ctypes.addressof(opts))
    if ret in (-errno.ENOENT, -errno.EINVAL, -errno.ENODEV):
        return False
    check_int(ret, f"detaching the TC {direction} filter of interface {ifindex}")
    return True


def _rtnetlink(request: bytes, seq: int, what: str) -> bytes:
    from otel_kubeskoop.netlink.sockets import dump

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.settimeout(_NETLINK_TIMEOUT)
        return dump(sock, request, seq, what=what)


def filters(ifindex: int, direction: Direction) -> list[TcFilter]:
    """Every filter on the hook, from an ``RTM_GETTFILTER`` dump (none without a clsact qdisc)."""
    from otel_kubeskoop.netlink.tc import filter_dump_request, parse_filters

    try:
        raw = _rtnetlink(filter_dump_request(ifindex, _PARENT[direction], 1), 1,
                         f"TC filter dump of interface {ifindex}")
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENODEV):  # no qdisc, no interface
            return []
        raise
    return [f for f in parse_filters(raw) if f.ifindex == ifindex]


def add_bpf_filter(ifindex: int, direction: Direction, prog_fd: int, handle: int, priority: int,
                   protocol: int, name: str) -> bool:
    """Add a direct-action ``cls_bpf`` filter for frames of ``protocol`` (ETH_P_*); False if the
    hook already has a filter at (handle, priority)."""
    from otel_kubeskoop.netlink.tc import bpf_filter_request

    request = bpf_filter_request(ifindex, _PARENT[direction], handle, priority, protocol, prog_fd,
                                 name, 1)
    try:
        _rtnetlink(request, 1, f"adding TC {direction} filter {name!r} to interface {ifindex}")
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise
    return True


# --- programs (any namespace) ----------------------------------------------------------------


@functools.cache
def _prog_info_layout() -> btf_mod.StructLayout:
    return btf_mod.vmlinux_btf().struct_layout("bpf_prog_info")


def _prog_info(fd: int) -> bytes:
    layout = _prog_info_layout()
    buf = ctypes.create_string_buffer(layout.size)
    size = ctypes.c_uint32(layout.size)
    check_int(libbpf.lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size)),
              "BPF program info")
    return buf.raw


def load_passthrough(name: str) -> int:
    """Load a TC classifier program named ``name`` that returns ``TC_ACT_UNSPEC`` (the next filter
    decides) and does nothing else; returns its fd, which the caller closes."""
    fd = libbpf.lib().bpf_prog_load(_SCHED_CLS, name.encode(), b"GPL", _PASSTHROUGH,
                                    len(_PASSTHROUGH) // 8, None)
    return check_int(fd, f"loading the TC program {name}")


def program_id(prog_fd: int) -> int:
    """The kernel's id of a loaded program."""
    (prog_id,) = struct.unpack_from("=I", _prog_info(prog_fd), _prog_info_layout().offsets["id"])
    return prog_id


def program_name(prog_id: int) -> str | None:
    """The name of program ``prog_id`` (at most 15 characters), or None if it is gone."""
    fd = libbpf.lib().bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        if fd == -errno.ENOENT:
            return None
        raise LibbpfError(-fd, f"BPF program {prog_id}: {libbpf.strerror(-fd)}")
    try:
        offset = _prog_info_layout().offsets["name"]
        return _prog_info(fd)[offset : offset + 16].split(b"\0", 1)[0].decode(errors="replace")
    finally:
        os.close(fd)
