"""The demo's image source: the images of a folder, a ``.txt`` list or one file, one per read, skipping the
unreadable ones (and saying so at the end)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.image_lists import list_images
from ..data.images import IMG_SUFFIXES, decode_checked, images_in
from .capture import SourceError

LIST_SUFFIX = ".txt"  # an image list, one path per line


class ImageGrabber:
    """Images from a folder (and its subfolders, sorted by path), a ``.txt`` list (one path per line, relative to
    the list's folder, as ``bench`` and ``quantize`` read it) or a single image file, one per read."""

    def __init__(self, target: str) -> None:
        path = Path(target)
        if path.suffix.lower() == LIST_SUFFIX:
            try:
                files = list_images(path)
            except (OSError, ValueError) as e:
                raise SourceError(str(e)) from None  # it names the list
        else:
            files = [path] if path.is_file() else images_in(path)
        if not files:
            raise SourceError(f"no images ({', '.join(sorted(IMG_SUFFIXES))}) in {target}")
        self.files = files
        self.position = 0
        self.readable = 0  # images decoded so far; unreadable or truncated ones are skipped
        self.skipped: list[tuple[Path, str]] = []  # each with why
        self.current: str | None = None  # the file of the image read last
        self.description = f"{target} [{len(files)} images]"
        self.fps = None

    def read(self) -> np.ndarray | None:
        """The next readable image, None after the last; raises SourceError when none of them could be read."""
        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            image, why = decode_checked(path)
            if image is not None:
                self.readable += 1
                self.current = str(path)
                return image
            self.skipped.append((path, why))
        if not self.readable:
            raise SourceError(f"none of the {len(self.files)} images could be read (first: {self.files[0]}); "
                              "pass intact images (JPEG, PNG, ...)")
        return None

    @property
    def end_note(self) -> str | None:
        """What the end of the images leaves to say: the unreadable images skipped, if any."""
        if not self.skipped:
            return None
        first, why = self.skipped[0]
        return f"skipped {len(self.skipped)} of {len(self.files)} images that cannot be used (first: {first}: {why})"

    def close(self) -> None:
        self.position = len(self.files)
