# SPDX-License-Identifier: Apache-2.0
"""A ConfigMap volume as the kubelet writes it (its AtomicWriter): each update a new
``..<timestamp>/`` directory, a ``..data_tmp`` symlink to it renamed over ``..data`` in one step,
the old directory removed; the user-visible ``config.yaml -> ..data/config.yaml`` never changes.
See https://github.com/kubernetes/kubernetes/blob/master/pkg/volume/util/atomic_writer.go"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml


class ConfigMapVolume:
    def __init__(self, root: Path, key: str = "config.yaml") -> None:
        self.root = root
        self.key = key
        self.updates = 0
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> str:
        return str(self.root / self.key)

    def write(self, document: dict[str, Any] | str) -> None:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        self.updates += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.monotonic_ns()}_{self.updates}"
        new_dir = self.root / stamp
        new_dir.mkdir()
        (new_dir / self.key).write_text(text)
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        user = self.root / self.key
        if not user.is_symlink():
            os.symlink(f"..data/{self.key}", user)
        if old is not None:
            shutil.rmtree(self.root / old)
