"""Video decoding with OpenCV: uniform frame sampling.

``sample_frames(path, n)`` returns ``n`` frames spread evenly over the video: frame ``i`` of
``n`` is taken at index ``floor((i + 0.5) * T / n)`` for a video of ``T`` frames (the centre
of each of ``n`` equal segments), so the same video always gives the same frames. Frames are
read sequentially (``grab``) rather than by seeking, which is exact for every codec; when
the container's frame count is wrong the video is counted by reading it through.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from vitfas.errors import BadVideoError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".avi", ".mov", ".mp4", ".m4v", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp", ".flv"}
)


def is_video_file(path: str | Path) -> bool:
    """True when the file name has one of the video extensions vitfas reads."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def uniform_indices(total: int, n: int | None) -> list[int]:
    """Indices of ``n`` frames spread evenly over ``total`` (all when ``n`` is None or
    ``n >= total``): ``floor((i + 0.5) * total / n)``."""
    if total <= 0:
        return []
    if n is None or n >= total:
        return list(range(total))
    if n <= 0:
        raise BadVideoError(f"frames per video: expected >= 1, got {n}")
    return [int((i + 0.5) * total / n) for i in range(n)]


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise BadVideoError(f"{path}: no such file")
    if not path.is_file():
        raise BadVideoError(f"{path}: expected a video file, found a directory or special file")
    if path.stat().st_size == 0:
        raise BadVideoError(f"{path}: empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise BadVideoError(f"{path}: OpenCV cannot open this video (corrupt or unknown codec)")
    return cap


def count_frames(path: str | Path) -> int:
    """Number of decodable frames, by reading the video through."""
    p = Path(path)
    cap = _open(p)
    try:
        n = 0
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def _read_indices(p: Path, wanted: list[int]) -> tuple[list[tuple[int, np.ndarray]], int]:
    cap = _open(p)
    out: list[tuple[int, np.ndarray]] = []
    want = set(wanted)
    last = max(wanted) if wanted else -1
    i = 0
    try:
        while i <= last and cap.grab():
            if i in want:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None and bgr.size:
                    if bgr.ndim == 2:
                        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                    out.append((i, np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
            i += 1
    finally:
        cap.release()
    return out, i


def sample_frames(path: str | Path, n: int | None) -> list[tuple[int, np.ndarray]]:
    """Decode ``n`` frames sampled uniformly from a video.

    Args:
        path: video file.
        n: frames wanted; ``None`` for every frame. Videos shorter than ``n`` give all their
            frames (no frame is repeated).

    Returns:
        ``[(frame index, [H, W, 3] uint8 RGB), ...]`` in increasing index order.

    Raises:
        BadVideoError: missing, empty or unreadable file, or no decodable frame; the message
            names the file.
    """
    p = Path(path)
    if n is not None and n <= 0:
        raise BadVideoError(f"{p}: frames per video must be >= 1, got {n}")
    cap = _open(p)
    reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if reported > 0:
        wanted = uniform_indices(reported, n)
        frames, read_to = _read_indices(p, wanted)
        if len(frames) == len(wanted):
            return frames
        log.debug("%s: container says %d frames, decoding stopped at %d", p, reported, read_to)
    total = count_frames(p)
    if total == 0:
        raise BadVideoError(f"{p}: no decodable frame (truncated or unsupported video)")
    wanted = uniform_indices(total, n)
    frames, _ = _read_indices(p, wanted)
    if not frames:
        raise BadVideoError(f"{p}: no decodable frame (truncated or unsupported video)")
    return frames


def read_frame(path: str | Path, index: int) -> np.ndarray:
    """One frame (``[H, W, 3]`` uint8 RGB) by index; ``BadVideoError`` if it is past the end."""
    p = Path(path)
    frames, read_to = _read_indices(p, [int(index)])
    if not frames:
        raise BadVideoError(f"{p}: frame {index} not decodable (video has {read_to} frames)")
    return frames[0][1]
