# SPDX-License-Identifier: Apache-2.0
"""``otel-kubeskoop watch``: follow the running agent's live event stream (telemetry/stream.py).

Reading the stream (a unix socket, one JSON object per line) is kept apart from showing it:
:func:`follow` yields the messages, :func:`table_row` formats one event.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from otel_kubeskoop.vocabulary import attributes as A


class NoAgent(Exception):
    """Nothing serves the stream at the path (no agent running here, or its stream is off)."""


def netns_inode(value: str, netns_dir: str = "/run/netns") -> int:
    """``--netns``: an inode number, or the name of a namespace under ``netns_dir``."""
    if value.isdigit():
        return int(value)
    try:
        return os.stat(os.path.join(netns_dir, value)).st_ino
    except OSError as exc:
        raise ValueError(f"no network namespace {value!r} in {netns_dir}: {exc.strerror}") from None


def connect(path: str, hello: Mapping[str, Any]) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise NoAgent(f"no agent serves its event stream at {path} ({exc.strerror}): is otel-kubeskoop running "
                      f"here, with eventStream.enabled?") from None
    sock.sendall((json.dumps(hello) + "\n").encode())
    return sock


def follow(path: str, hello: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The stream's messages, until the agent closes it. The agent's refusal is a :class:`NoAgent`."""
    sock = connect(path, hello)
    try:
        for line in sock.makefile("rb"):
            message = json.loads(line)
            if "error" in message:
                raise NoAgent(f"the agent refused: {message['error']}")
            yield message
    finally:
        sock.close()


def _endpoint(attrs: Mapping[str, Any], side: str) -> str:
    address, port = attrs.get(f"{side}.address"), attrs.get(f"{side}.port")
    if address is None:
        return ""
    address = f"[{address}]" if ":" in str(address) else str(address)
    return f"{address}:{port}" if port is not None else address


def table_row(record: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """time, pod (or namespace), type, tuple, reason."""
    attrs = record.get("attributes", {})
    resource = record.get("resource", {})
    ts = record.get("timestamp") or time.time_ns()
    when = time.strftime("%H:%M:%S", time.localtime(ts / 1e9)) + f".{int(ts % 1_000_000_000) // 1_000_000:03d}"
    pod = resource.get(A.K8S_POD_NAME)
    who = f"{resource.get(A.K8S_NAMESPACE_NAME)}/{pod}" if pod else (
        resource.get(A.NETNS_NAME) or (f"netns:{resource[A.NETNS_INODE]}" if A.NETNS_INODE in resource else "(node)"))
    src, dst = _endpoint(attrs, "source"), _endpoint(attrs, "destination")
    transport = attrs.get(A.NETWORK_TRANSPORT, "")
    tuple_ = f"{transport} {src} -> {dst}".strip() if src or dst else ""
    reason = next((str(v) for k, v in attrs.items() if k.endswith(".reason") or k.endswith(".state")), "")
    return when, who, record.get("type", ""), tuple_, reason
