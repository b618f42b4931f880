# SPDX-License-Identifier: Apache-2.0
"""RDMA port counters from sysfs, ``/sys/class/infiniband/<device>/ports/<port>/``.

Made by ``drivers/infiniband/core/sysfs.c``: one directory per RDMA device (a link to the PCI or
virtual device), ``ports/<n>/`` per port (numbered from 1), and in each port:

- ``counters/<name>``: the IBTA PortCounters / PortCountersExtended attributes read through the
  device's performance-management agent (``symbol_error``, ``port_rcv_data``, ``VL15_dropped``...);
  ``*_data`` count 4-octet words. On RoCE ports some of them fail to read (``EINVAL``).
- ``hw_counters/<name>``: the driver's ``rdma_hw_stats`` for that port (mlx5 ``out_of_buffer``,
  ``np_cnp_sent``...; erdma ``hw_rx_bytes_cnt``...), the same values RDMA netlink's
  ``RDMA_NLDEV_CMD_STAT_GET`` returns; plus ``lifespan``, the refresh period in ms, which is not a
  counter.

Each file holds one unsigned decimal and a newline. See
https://docs.kernel.org/admin-guide/abi-testing.html (``/sys/class/infiniband/<device>/ports/
<port-num>/counters/*`` and ``hw_counters/*``).
"""

from __future__ import annotations

import os

from otel_kubeskoop.procfs import FileSource, ParseError, ProcDir

RELPATH = "class/infiniband"
COUNTER_DIRS = ("counters", "hw_counters")


def device_type(device: str) -> str:
    """The driver family upstream derives from the device name: ``mlx5``, ``erdma`` or ``unknown``."""
    for prefix in ("mlx5", "erdma"):
        if device.startswith(prefix):
            return prefix
    return "unknown"


def parse_counter(data: bytes, path: str) -> int:
    """One counter file's value. Raises :class:`ParseError` naming ``path`` unless it is one
    unsigned decimal (surrounding whitespace allowed)."""
    text = data.strip()
    if not text.isdigit():
        raise ParseError(path, f"expected an unsigned decimal, got {text[:40]!r}")
    return int(text)


def list_devices(sys_root: str) -> list[str]:
    """RDMA device names under ``<sys_root>/class/infiniband``, sorted.
    ``FileNotFoundError`` (no RDMA core loaded) passes through unwrapped."""
    return sorted(os.listdir(os.path.join(sys_root, RELPATH)))


def list_ports(sys_root: str, device: str) -> list[int]:
    """Port numbers of ``device``, sorted (entries that are not numbers are ignored)."""
    names = os.listdir(os.path.join(sys_root, RELPATH, device, "ports"))
    return sorted(int(n) for n in names if n.isdigit())


def read_port_counters(sys_root: str, device: str, port: int,
                       errors: list[BaseException] | None = None) -> dict[str, int]:
    """Every counter of one port, ``counters/`` then ``hw_counters/`` (a name in both keeps the
    first), one full read per file.

    A file that cannot be read (``EINVAL`` on a RoCE port) is left out; a file that does not parse
    is left out and its :class:`ParseError` appended to ``errors``. A missing port directory raises
    ``FileNotFoundError``; a missing ``counters`` or ``hw_counters`` directory is no data.
    """
    port_dir = os.path.join(sys_root, RELPATH, device, "ports", str(port))
    if not os.path.isdir(port_dir):
        raise FileNotFoundError(port_dir)
    out: dict[str, int] = {}
    for sub in COUNTER_DIRS:
        source: FileSource = ProcDir(os.path.join(port_dir, sub))
        try:
            names = sorted(os.listdir(source.path("")))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name in out:
                continue
            try:
                out[name] = parse_counter(source.read(name), source.path(name))
            except ParseError as exc:
                if errors is not None:
                    errors.append(exc)
            except OSError:
                continue  # unreadable on this port type, or gone
    return out
