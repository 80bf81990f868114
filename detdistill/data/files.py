"""File placement shared by the dataset builders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk space), or copy it across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
