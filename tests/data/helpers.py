"""Tiny generated media for data tests (no real datasets)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FOURCC = {".avi": "MJPG", ".mov": "mp4v", ".mp4": "mp4v"}


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (32, 24), face=None) -> Path:
    """A tiny video whose frame i is filled with value 10 * i (or contains ``face``, an RGB
    array pasted in the middle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), 10,
                         (w, h))
    assert vw.isOpened(), path
    for i in range(frames):
        img = np.full((h, w, 3), (10 * i) % 250, np.uint8)
        if face is not None:
            fh, fw = face.shape[:2]
            y0, x0 = (h - fh) // 2, (w - fw) // 2
            img[y0:y0 + fh, x0:x0 + fw] = face[:, :, ::-1]
        vw.write(img)
    vw.release()
    return path


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path
