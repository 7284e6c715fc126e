"""Interim stand-ins for vitfas.data.io, vitfas.faces and vitfas.data.video (issue 3).

Used by :mod:`vitfas.predict` only while those modules have not landed; the signatures are
the ones pinned in docs/DESIGN.md. Only the ``none`` detector (whole image is the face) is
available here. Delete this file once issue 3 is merged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitfas.errors import BadConfigError, BadImageError, BadVideoError

MAX_PIXELS = 100_000_000


def decode_image(data: bytes, name: str = "<upload>") -> np.ndarray:
    from PIL import Image, ImageOps

    if not data:
        raise BadImageError(f"{name}: empty file (0 bytes), expected an image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise BadImageError(
                    f"{name}: {im.width}x{im.height} pixels, expected at most {MAX_PIXELS}"
                )
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except BadImageError:
        raise
    except Exception as exc:
        raise BadImageError(f"{name}: cannot decode as an image ({exc})") from exc


def load_image(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise BadImageError(f"{p}: no such file")
    return decode_image(p.read_bytes(), str(p))


@dataclass
class Face:
    box: tuple[float, float, float, float]
    score: float | None = 1.0
    landmarks: Any = None


@dataclass
class CropRecipe:
    detector: str = "none"
    scale: float = 1.0
    size: int = 224
    colour_order: str = "RGB"
    pad: str = "constant"

    def apply(self, rgb: np.ndarray) -> list[tuple[Face, np.ndarray]]:
        import cv2

        if self.detector != "none":
            raise BadConfigError(
                f"detector {self.detector!r} needs vitfas.faces (issue 3), not merged yet"
            )
        H, W = rgb.shape[:2]
        crop = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self.colour_order == "BGR":
            crop = crop[..., ::-1].copy()
        return [(Face((0.0, 0.0, float(W), float(H))), crop)]


def sample_frames(path: str | Path, n: int) -> list[tuple[int, np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not cap.isOpened() or total <= 0:
            raise BadVideoError(f"{path}: cannot open as a video or it has no frames")
        idx = sorted({round(i) for i in np.linspace(0, total - 1, n)})
        out = []
        for i in idx:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, frame = cap.read()
            if ok:
                out.append((i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        if not out:
            raise BadVideoError(f"{path}: no decodable frames")
        return out
    finally:
        cap.release()


@dataclass
class Explanation:
    maps: Any  # [B, h, w] torch tensor over the patch grid


def explain(model: Any, x: Any, method: str = "rollout") -> Explanation:
    """Attention rollout (Abnar & Zuidema 2020, mean head fusion): the class token's row
    over the patch grid, ``x [B, 3, H, W] -> maps [B, h, w]``."""
    import torch

    if method != "rollout":
        raise BadConfigError(f"interim explain supports 'rollout' only, got {method!r}")
    with torch.no_grad():
        _, attns = model(x, return_attn=True)
    n = attns[0].shape[-1]
    eye = torch.eye(n)
    r = eye.expand(x.shape[0], n, n)
    for a in attns:
        a = a.mean(1) + eye
        a = a / a.sum(-1, keepdim=True)
        r = a @ r
    p = model.num_prefix_tokens
    ph = model.patch_embed.patch_size
    gh, gw = x.shape[-2] // ph, x.shape[-1] // ph
    return Explanation(r[:, 0, p:].reshape(-1, gh, gw))


def overlay_on_crop(crop: np.ndarray, grid_map: np.ndarray, patch_size: tuple[int, int],
                    input_size: tuple[int, int], alpha: float = 0.5) -> np.ndarray:
    """Blend the grid map (rescaled to [0, 1], jet colour map) over an RGB crop."""
    import cv2
    from matplotlib import colormaps

    m = np.asarray(grid_map, np.float32)
    m = (m - m.min()) / (m.max() - m.min() + 1e-12)
    h = cv2.resize(m, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = (colormaps["jet"](np.clip(h, 0, 1))[..., :3] * 255).astype(np.float32)
    return ((1 - alpha) * crop.astype(np.float32) + alpha * colour).clip(0, 255).astype(
        np.uint8)
