"""Interim stand-in for ``vitfas.explain.explain(model, x, "rollout")`` and
``vitfas.explain.overlay_on_crop`` (issue 5).

Used by :mod:`vitfas.predict` only while vitfas.explain has not landed; same signatures.
Delete this file once issue 5 is merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitfas.errors import BadConfigError


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
