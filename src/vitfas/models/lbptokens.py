"""A ViT whose tokens are colour LBP histograms of image cells (the "LBP-token ViT").

The LBP + SVM baseline (:mod:`vitfas.baselines.lbp`) describes a face crop by the
histograms of uniform local binary patterns (LBP^{u2}_{8,1}) of its Y, Cb, Cr, H, S and V
planes (Boulkenafet et al., 2016). That descriptor is hard to beat from few images because
it is fixed: nothing about texture has to be learnt. This model keeps it as the patch
embedding and learns only what comes after it:

1. the normalised input ``[B, 3, H, W]`` is mapped back to 0..255 RGB (``x * std + mean``,
   clamped, times 255, rounded to whole grey levels as a uint8 image has them);
2. six planes Y, Cb, Cr, H, S, V are computed with OpenCV's integer formulas for uint8
   images (``cv2.COLOR_RGB2YCrCb`` and ``cv2.COLOR_RGB2HSV``: H in 0..179, the rest 0..255);
3. on each plane the LBP code of every interior pixel (one pixel border left out) is
   computed as :func:`skimage.feature.local_binary_pattern` ``(plane, 8, 1,
   "nri_uniform")`` does it: neighbour ``p`` sits at row offset ``-sin(2 pi p / 8)`` and
   column offset ``cos(2 pi p / 8)`` (both rounded to 5 decimals), diagonal neighbours are
   bilinearly interpolated in float64 with skimage's formula and operation order, bit
   ``p`` is ``neighbour - centre >= 0``, and the 8-bit pattern is mapped by a 256-entry
   lookup table to skimage's 59 ``nri_uniform`` labels (0: no bit set; ``1 + (n - 1) 8 +
   rotation`` for the uniform patterns with ``n`` bits set; 57: all bits set; 58: every
   non-uniform pattern);
4. the interior is cut into a ``grid x grid`` partition of cells (cell ``i`` covers rows
   ``floor(i Hi / g) .. floor((i + 1) Hi / g) - 1`` of the ``Hi`` interior rows, columns
   alike); each cell gets one normalised 59-bin histogram per plane (each sums to 1), the
   six concatenated plane-major (``[Y 0..58, Cb 0..58, ..., V 0..58]``, the baseline's
   order): 354 numbers per cell;
5. ``sqrt`` (Hellinger map), per-feature standardisation (``BatchNorm1d(354,
   affine=False)``, statistics over all cells of the batch) and a learnt
   ``Linear(354, embed_dim)`` give one token per cell.

Steps 1-4 are a step function of the input: no gradient reaches the image (explain's
gradient methods still work, they differentiate with respect to attention). Everything runs
as elementwise ops, slices, comparisons, gathers and one scatter-add (the histogram
counts: ONNX ``ScatterElements`` with ``reduction="add"``), so the model exports to ONNX.
After the embedding the model is the project's
:class:`~vitfas.models.vit.VisionTransformer` (class token, position embedding, blocks,
``return_attn`` / rollout); ``patch_embed.patch_size`` is ``img_size / grid``, so
explainability maps one token to one ``img_size / grid`` square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vitfas.models._config import input_norm_check
from vitfas.models.registry import register_model
from vitfas.models.vit import VisionTransformer, ViTConfig

LBP_POINTS = 8
LBP_RADIUS = 1.0
N_LABELS = LBP_POINTS * (LBP_POINTS - 1) + 3  # 59 nri_uniform labels
PLANES = ("Y", "Cb", "Cr", "H", "S", "V")
N_FEATURES = len(PLANES) * N_LABELS  # 354 per cell


def nri_uniform_label(bits: tuple[int, ...]) -> int:
    """skimage's ``nri_uniform`` label of one LBP pattern (``bits[p]`` = neighbour ``p`` >=
    centre): 0 for no bit, ``P (P - 1) + 1`` for all, ``P (P - 1) + 2`` when the pattern has
    more than two 0/1 changes along ``bits[0] .. bits[P-1]``, else ``1 + (n - 1) P + rot``
    with ``n`` ones and ``rot`` the circular shift of the run of ones."""
    p = len(bits)
    changes = sum(bits[i] != bits[i + 1] for i in range(p - 1))
    if changes > 2:
        return p * (p - 1) + 2
    n_ones = sum(bits)
    if n_ones == 0:
        return 0
    if n_ones == p:
        return p * (p - 1) + 1
    first_one = bits.index(1)
    first_zero = bits.index(0)
    rot = n_ones - first_zero if first_one == 0 else p - first_one
    return 1 + (n_ones - 1) * p + rot


def nri_uniform_table(points: int = LBP_POINTS) -> torch.Tensor:
    """``[2 ** P]`` int64: the label of the code ``sum_p bit_p 2 ** p``."""
    return torch.tensor([nri_uniform_label(tuple((c >> i) & 1 for i in range(points)))
                         for c in range(2**points)], dtype=torch.int64)


def lbp_offsets(points: int = LBP_POINTS, radius: float = LBP_RADIUS) -> np.ndarray:
    """``[P, 2]`` float64 (row, col) offsets of the neighbours, as skimage rounds them."""
    k = np.arange(points, dtype=np.float64)
    rr = np.round(-radius * np.sin(2 * np.pi * k / points), 5)
    cc = np.round(radius * np.cos(2 * np.pi * k / points), 5)
    return np.stack([rr, cc], 1)


def _bilinear_plan(n: int, offset: float) -> tuple[int, int, torch.Tensor]:
    """For interior positions ``1 .. n-2`` and one offset: the integer offsets of the
    floor and ceil samples (the same for every position; checked) and the float64 weights
    ``(pos + offset) - floor(pos + offset)`` computed exactly as skimage does."""
    pos = np.arange(1, n - 1, dtype=np.float64) + offset
    lo, hi = np.floor(pos), np.ceil(pos)
    base = np.arange(1, n - 1, dtype=np.float64)
    d_lo, d_hi = np.unique(lo - base), np.unique(hi - base)
    if len(d_lo) != 1 or len(d_hi) != 1:  # pragma: no cover - offsets are below 1 pixel
        raise ValueError(f"LBP offset {offset} does not map to one pixel shift")
    return int(d_lo[0]), int(d_hi[0]), torch.tensor(pos - lo)


def _opencv_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's uint8 RGB->HSV division tables (``hsv_shift = 12``): ``sdiv[v] =
    round(255 * 4096 / v)`` and ``hdiv[d] = round(180 * 4096 / (6 d))``, both 0 at 0."""
    i = np.arange(256, dtype=np.float64)
    with np.errstate(divide="ignore"):
        sdiv = np.where(i > 0, np.round((255 << 12) / np.maximum(i, 1)), 0.0)
        hdiv = np.where(i > 0, np.round((180 << 12) / (6.0 * np.maximum(i, 1))), 0.0)
    return torch.tensor(sdiv), torch.tensor(hdiv)


def opencv_planes(rgb: torch.Tensor, sdiv: torch.Tensor | None = None,
                  hdiv: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 3, H, W]`` whole-number RGB in 0..255 (float64) -> ``[B, 6, H, W]`` float64
    planes Y, Cb, Cr, H (0..179), S, V with OpenCV's fixed-point uint8 formulas
    (``yuv_shift = 14``: Y = (4899 R + 9617 G + 1868 B) / 2^14, Cr = 128 + 11682 (R - Y) /
    2^14, Cb = 128 + 9241 (B - Y) / 2^14, each rounded; HSV with ``hsv_shift = 12``)."""
    if sdiv is None or hdiv is None:
        sdiv, hdiv = _opencv_tables()
        sdiv, hdiv = sdiv.to(rgb.device), hdiv.to(rgb.device)
    r, g, b = rgb.unbind(1)
    y = torch.floor((r * 4899 + g * 9617 + b * 1868 + 8192) / 16384)
    half = 128 * 16384 + 8192
    cr = torch.floor(((r - y) * 11682 + half) / 16384).clamp(0, 255)
    cb = torch.floor(((b - y) * 9241 + half) / 16384).clamp(0, 255)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s = torch.floor((diff * sdiv[v.long()] + 2048) / 4096)
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = torch.floor((h * hdiv[diff.long()] + 2048) / 4096)
    h = h + 180 * (h < 0).to(h.dtype)
    return torch.stack([y, cb, cr, h, s, v], 1)


def cell_bounds(n: int, grid: int) -> list[tuple[int, int]]:
    """The ``grid`` cells ``[start, stop)`` partitioning ``n`` positions."""
    return [(i * n // grid, (i + 1) * n // grid) for i in range(grid)]


def _cell_index(n: int, grid: int) -> torch.Tensor:
    """``[n]`` int64: the cell of each of ``n`` positions."""
    idx = torch.zeros(n, dtype=torch.int64)
    for i, (a, b) in enumerate(cell_bounds(n, grid)):
        idx[a:b] = i
    return idx


@dataclass(frozen=True)
class LBPTokenViTConfig(ViTConfig):
    """A :class:`ViTConfig` whose tokens are per-cell colour LBP histograms.

    Attributes:
        lbp_grid: the interior is cut into ``lbp_grid x lbp_grid`` cells, one token each.
            ``patch_size`` is set to ``img_size / lbp_grid`` (whatever is passed), so the
            image must be square with a side divisible by ``lbp_grid``.
        input_mean, input_std: the normalisation of the model's input, to recover RGB
            (``vitfas train`` sets them from ``data.mean`` and ``data.std``).
    """

    lbp_grid: int = 2
    input_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        norm_check = input_norm_check(self)
        object.__setattr__(self, "lbp_grid", int(self.lbp_grid))
        size = self.img_size if isinstance(self.img_size, int) else tuple(self.img_size)
        side = size if isinstance(size, int) else size[0]
        square = isinstance(size, int) or size[0] == size[1]
        g = self.lbp_grid
        checks = [
            (g >= 1, f"lbp_grid must be >= 1, got {g}"),
            (square, f"img_size must be square, got {size}"),
            (side % max(g, 1) == 0 and side // max(g, 1) >= 2,
             f"img_size {side} must be a multiple of lbp_grid {g} with cells of >= 2 px"),
            (self.in_chans == 3, f"needs in_chans=3 (RGB), got {self.in_chans}"),
            (not self.dynamic_img_size and not self.dynamic_img_pad,
             "needs a fixed img_size (dynamic_img_size / dynamic_img_pad must be False)"),
            norm_check,
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"LBPTokenViTConfig: {msg}")
        object.__setattr__(self, "patch_size", side // g)
        super().__post_init__()


class LBPTokenEmbed(nn.Module):
    """Normalised RGB ``[B, 3, H, W]`` -> LBP-histogram tokens ``[B, g, g, D]`` (the grid
    kept 2-D, as :class:`~vitfas.models.vit.PatchEmbed` returns it; ``tokens`` gives the
    flat ``[B, g * g, D]``).

    Pieces, each usable alone: :meth:`planes` (``-> [B, 6, H, W]``), :meth:`codes`
    (``-> [B, C, H - 2, W - 2]`` int64 labels 0..58), :meth:`histograms`
    (``-> [B, g, g, 354]``, each plane's 59 bins summing to 1). The trainable part is
    ``proj`` (and nothing else: the standardisation has no affine parameters).
    """

    def __init__(self, img_size: int, grid: int, embed_dim: int,
                 mean: tuple[float, ...] = (0.5, 0.5, 0.5),
                 std: tuple[float, ...] = (0.5, 0.5, 0.5)) -> None:
        super().__init__()
        if img_size < 3 or img_size - 2 < grid:
            raise ValueError(f"LBPTokenEmbed: img_size {img_size} too small for grid {grid}")
        self.img_size = img_size
        self.grid = grid
        self.patch_size = img_size // grid
        self.mean_std = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        # per neighbour: (row lo, row hi, col lo, col hi) shifts; weights in the buffers
        self.shifts: list[tuple[int, int, int, int]] = []
        for ro, co in lbp_offsets():
            r_lo, r_hi, _ = _bilinear_plan(img_size, float(ro))
            c_lo, c_hi, _ = _bilinear_plan(img_size, float(co))
            self.shifts.append((r_lo, r_hi, c_lo, c_hi))
        for name, value in self._buffer_values().items():
            self.register_buffer(name, value, persistent=False)
        self.norm = nn.BatchNorm1d(N_FEATURES, affine=False)
        self.proj = nn.Linear(N_FEATURES, embed_dim)

    def _buffer_values(self) -> dict[str, torch.Tensor]:
        """The fixed tables (all recomputable, none saved in checkpoints)."""
        mean, std = self.mean_std
        sdiv, hdiv = _opencv_tables()
        out = {
            "mean": torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1),
            "std": torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1),
            "sdiv": sdiv, "hdiv": hdiv, "lut": nri_uniform_table(),
        }
        for p, (ro, co) in enumerate(lbp_offsets()):  # bilinear weights per row / column
            out[f"dr{p}"] = _bilinear_plan(self.img_size, float(ro))[2].view(-1, 1)
            out[f"dc{p}"] = _bilinear_plan(self.img_size, float(co))[2].view(1, -1)
        # each interior pixel's histogram slot base (cell * 59) and each slot's cell size
        interior, g = self.img_size - 2, self.grid
        cells = _cell_index(interior, g)
        out["slot"] = ((cells.view(-1, 1) * g + cells.view(1, -1)) * N_LABELS).flatten()
        sizes = torch.tensor([float(b - a) for a, b in cell_bounds(interior, g)])
        out["cell_pixels"] = (sizes.view(-1, 1) * sizes.view(1, -1)).flatten() \
            .repeat_interleave(N_LABELS)
        return out

    def init_non_persistent_buffers(self) -> None:
        """Recompute the tables (after ``to_empty()`` from the meta device)."""
        device = self.proj.weight.device
        for name, value in self._buffer_values().items():
            setattr(self, name, value.to(device))

    def _check(self, x: torch.Tensor, chans: int, what: str) -> None:
        s = self.img_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (chans, s, s):
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"LBPTokenEmbed.{what}: expected [B, {chans}, {s}, {s}], "
                             f"got {shape}")

    @torch.no_grad()
    def planes(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised RGB -> ``[B, 6, H, W]`` float64 Y, Cb, Cr, H, S, V."""
        self._check(x, 3, "planes")
        f64 = torch.float64  # tables stay exact even after model.half()
        rgb = torch.round((x.double() * self.std.to(f64) + self.mean.to(f64)).clamp(0, 1) * 255)
        return opencv_planes(rgb, self.sdiv.to(f64), self.hdiv.to(f64))

    @torch.no_grad()
    def codes(self, planes: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` planes (any real values) -> ``[B, C, H-2, W-2]`` int64
        ``nri_uniform`` labels of the interior pixels, as skimage computes them."""
        if planes.ndim != 4 or tuple(planes.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"LBPTokenEmbed.codes: expected [B, C, {self.img_size}, "
                             f"{self.img_size}] planes, got {list(planes.shape)}")
        im = planes.double()
        h, w = im.shape[-2:]

        def at(dy: int, dx: int) -> torch.Tensor:
            return im[..., 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]

        centre = at(0, 0)
        code = torch.zeros_like(centre)
        for p, (r_lo, r_hi, c_lo, c_hi) in enumerate(self.shifts):
            dr = getattr(self, f"dr{p}").to(im.dtype)
            dc = getattr(self, f"dc{p}").to(im.dtype)
            top = (1 - dc) * at(r_lo, c_lo) + dc * at(r_lo, c_hi)
            bottom = (1 - dc) * at(r_hi, c_lo) + dc * at(r_hi, c_hi)
            tex = (1 - dr) * top + dr * bottom
            code = code + (tex - centre >= 0).to(im.dtype) * float(2**p)
        return self.lut[code.long()]

    @torch.no_grad()
    def histograms(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, C, Hi, Wi]`` labels -> ``[B, g, g, C * 59]`` per-cell histograms (each
        plane's 59 bins sum to 1), plane-major."""
        B, C = codes.shape[:2]
        g = self.grid
        if tuple(codes.shape[2:]) != (self.img_size - 2,) * 2:
            raise ValueError(f"LBPTokenEmbed.histograms: expected [B, C, {self.img_size - 2}, "
                             f"{self.img_size - 2}] codes, got {list(codes.shape)}")
        index = codes.flatten(2) + self.slot  # [B, C, Hi * Wi]: cell * 59 + label
        counts = torch.zeros(B, C, g * g * N_LABELS, device=codes.device)
        counts = counts.scatter_add(2, index, torch.ones_like(index, dtype=counts.dtype))
        hist = (counts / self.cell_pixels.to(counts.dtype)).view(B, C, g, g, N_LABELS)
        return hist.permute(0, 2, 3, 1, 4).reshape(B, g, g, C * N_LABELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, g, g, D]``."""
        self._check(x, 3, "forward")
        hist = self.histograms(self.codes(self.planes(x))).to(x.dtype)
        B, g = hist.shape[0], self.grid
        feats = self.norm(hist.sqrt().reshape(B * g * g, N_FEATURES))
        return self.proj(feats).reshape(B, g, g, -1)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, g * g, D]`` (row-major cells)."""
        return self.forward(x).flatten(1, 2)


class LBPTokenVisionTransformer(VisionTransformer):
    """:class:`VisionTransformer` with an :class:`LBPTokenEmbed` patch embedding.

    Shapes (B batch, D width, N = 1 + g * g with the class token): ``forward``
    ``[B, 3, H, W] -> [B, classes]``; ``forward_features`` ``-> [B, N, D]``;
    ``return_attn=True`` adds one ``[B, heads, N, N]`` map per block. The embedding's
    BatchNorm makes training-mode outputs depend on the batch; use ``eval()`` for
    inference.
    """

    def __init__(self, config: LBPTokenViTConfig) -> None:
        if not isinstance(config, LBPTokenViTConfig):
            raise TypeError(f"LBPTokenVisionTransformer needs an LBPTokenViTConfig, got "
                            f"{type(config).__name__}")
        super().__init__(config)
        c = config
        self.patch_embed = LBPTokenEmbed(c.img_size[0], c.lbp_grid, c.embed_dim,
                                         c.input_mean, c.input_std)
        # as the ViT's init_weights() treats patch_embed.proj (which covers re-initialising)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)


def lbptok_config(grid: int = 2, width: int = 64, depth: int = 2, heads: int = 4,
                  img_size: int = 64, **overrides: Any) -> LBPTokenViTConfig:
    """A small LBP-token config (two classes, MLP ratio 2, class-token head unless
    overridden)."""
    base: dict[str, Any] = {"num_classes": 2, "mlp_ratio": 2.0, **overrides}
    return LBPTokenViTConfig(img_size=img_size, patch_size=img_size // grid, embed_dim=width,
                             depth=depth, num_heads=heads, lbp_grid=grid, **base)


def _register() -> None:
    # 64 px like the LBP baseline; 2x2 or 4x4 cells of the 62x62 interior
    for grid in (2, 4):
        register_model(f"vit_lbptok_g{grid}_64", lbptok_config(grid=grid),
                       builder=LBPTokenVisionTransformer)


_register()
