"""File placement shared by the dataset builders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk space), or copy it across file systems. An existing ``dst`` is
    replaced, never written to: it may be a hard link to another source file, which a copy would overwrite."""
    if os.path.lexists(dst):
        if not os.path.islink(dst) and os.path.realpath(src) == os.path.realpath(dst):
            raise ValueError(f"cannot place {src} onto itself")  # unlinking dst would delete the source
        os.unlink(dst)
    try:
        os.link(src, dst)
    except FileExistsError:  # created meanwhile by someone else: never copy through it
        raise
    except OSError:
        shutil.copy2(src, dst)
