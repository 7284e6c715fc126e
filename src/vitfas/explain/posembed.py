"""Position-embedding similarity: does the embedding know where each patch is?

For every patch position the cosine similarity of its position embedding with every other
position's is drawn as a small ``h x w`` map, and the maps are laid out on the ``h x w``
grid (the ViT paper's Figure 7, centre). A learned embedding that trained well shows a
bright blob around each position (and row/column stripes); a broken or untrained one shows
noise. :func:`local_structure` puts a number on it: the mean similarity of 4-neighbours
against that of far-apart positions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitfas.errors import BadConfigError

log = logging.getLogger(__name__)


def position_embedding(model: nn.Module) -> tuple[torch.Tensor, tuple[int, int]]:
    """The patch positions' embeddings of a ViT: ``([h*w, D], (h, w))``.

    Learned embeddings are read from ``model.pos_embed`` (prefix entries, when the class,
    distillation or register tokens have one, are dropped); fixed sin-cos embeddings are
    computed for the model's grid. Relative-bias models (``pos_embed="rel"``) and models
    without a position embedding have no per-position vector and raise
    :class:`~vitfas.errors.BadConfigError`.
    """
    cfg = getattr(model, "config", None)
    grid = getattr(cfg, "grid_size", None)
    if grid is None:
        raise BadConfigError(f"{type(model).__name__} has no config.grid_size")
    h, w = int(grid[0]), int(grid[1])
    kind = getattr(cfg, "pos_embed", "learn")
    if kind == "sincos":
        from vitfas.models.pos_embed import sincos_2d

        return sincos_2d((h, w), int(model.embed_dim)), (h, w)
    pe = getattr(model, "pos_embed", None)
    if not isinstance(pe, torch.Tensor):
        raise BadConfigError(
            f"{type(model).__name__} has no absolute position embedding "
            f"(pos_embed={kind!r}); the similarity figure needs one per patch position"
        )
    pe = pe.detach().float().reshape(-1, pe.shape[-1])
    n = pe.shape[0]
    P = int(getattr(model, "num_prefix_tokens", 0))
    if n == h * w:
        return pe, (h, w)
    if n == P + h * w:
        return pe[P:], (h, w)
    raise BadConfigError(
        f"position embedding has {n} entries; expected {h * w} for the {h}x{w} grid "
        f"(or {P + h * w} with {P} prefix tokens)"
    )


def similarity_maps(emb: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity of each position with every other: ``[h*w, D] -> [h, w, h, w]``.

    ``out[i, j]`` is the ``h x w`` map of position ``(i, j)``'s similarity with all positions.
    """
    h, w = grid_size
    if emb.ndim != 2 or emb.shape[0] != h * w:
        raise BadConfigError(
            f"embedding must be [{h * w}, D] for a {h}x{w} grid, got {list(emb.shape)}"
        )
    e = F.normalize(emb.double(), dim=-1)
    return (e @ e.T).float().reshape(h, w, h, w)


def local_structure(sim: torch.Tensor) -> dict[str, float]:
    """Mean similarity of 4-neighbour positions vs. far-apart ones.

    Args:
        sim: ``[h, w, h, w]`` from :func:`similarity_maps`.

    Returns:
        ``{"neighbour": ..., "far": ..., "contrast": neighbour - far}``; "far" pairs are at
        least half the larger grid side apart (Chebyshev distance). A well-trained learned
        embedding or a sin-cos one has a clearly positive contrast; a random one about 0.
    """
    h, w = sim.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dy = (ys.reshape(-1, 1) - ys.reshape(1, -1)).abs()
    dx = (xs.reshape(-1, 1) - xs.reshape(1, -1)).abs()
    s = sim.reshape(h * w, h * w)
    neighbour = (dy + dx) == 1
    far = torch.maximum(dy, dx) >= max(1, max(h, w) // 2)
    if not neighbour.any() or not far.any():
        raise BadConfigError(f"a {h}x{w} grid is too small to compare near and far positions")
    nb, fa = float(s[neighbour].mean()), float(s[far].mean())
    return {"neighbour": nb, "far": fa, "contrast": nb - fa}


def similarity_figure(
    sim: torch.Tensor, path: str | Path, title: str | None = None, cmap: str = "viridis"
) -> Path:
    """Save the grid of small similarity maps as a PNG.

    Args:
        sim: ``[h, w, h, w]`` cosine similarities.
        path: PNG to write.
        title: figure title (e.g. the model's name).
    """
    from matplotlib.figure import Figure

    h, w = sim.shape[:2]
    s = sim.detach().cpu().numpy()
    gap = 1
    mosaic = np.full((h * (h + gap) - gap, w * (w + gap) - gap), np.nan, np.float32)
    for i in range(h):
        for j in range(w):
            y, x = i * (h + gap), j * (w + gap)
            mosaic[y : y + h, x : x + w] = s[i, j]
    side = float(np.clip(max(mosaic.shape) / 30.0, 4.0, 10.0))
    fig = Figure(figsize=(side * mosaic.shape[1] / max(mosaic.shape) + 1.4,
                          side * mosaic.shape[0] / max(mosaic.shape) + 0.8), dpi=100)
    ax = fig.subplots()
    # colour range: the lowest similarity present .. 1 (a fixed -1..1 washes out sin-cos
    # embeddings, whose similarities all sit well above 0)
    lo = float(min(np.nanmin(mosaic), 0.99))
    im = ax.imshow(mosaic, cmap=cmap, vmin=lo, vmax=1.0, interpolation="nearest")
    step_r, step_c = max(1, h // 8), max(1, w // 8)
    ax.set_yticks([i * (h + gap) + (h - 1) / 2 for i in range(0, h, step_r)],
                  [str(i + 1) for i in range(0, h, step_r)])
    ax.set_xticks([j * (w + gap) + (w - 1) / 2 for j in range(0, w, step_c)],
                  [str(j + 1) for j in range(0, w, step_c)])
    ax.set_ylabel("input patch row")
    ax.set_xlabel("input patch column")
    ax.tick_params(length=0, labelsize=7)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="cosine similarity")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p
