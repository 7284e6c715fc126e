"""The one input walker of the verbs that take images: files, folders and videos.

``vitfas predict``, ``vitfas explain`` and ``vitfas demo --predict`` all accept the same
inputs: image files, video files, and folders (walked recursively for images and videos,
in sorted order). Files named on the command line are kept as given, whatever their
extension, so that a missing or unreadable file is reported by the verb, not dropped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vitfas.data.io import IMAGE_EXTENSIONS
from vitfas.data.video import VIDEO_EXTENSIONS

INPUT_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def kind_of(path: str | Path) -> Literal["image", "video"]:
    """``"video"`` for the video extensions :mod:`vitfas.data.video` reads, else ``"image"``."""
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given (in order), folders walked recursively for image and video files
    (sorted); hidden files (``.name``) inside folders are left out."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in INPUT_EXTENSIONS
                and not f.name.startswith(".")
            )
        else:
            out.append(p)
    return out
