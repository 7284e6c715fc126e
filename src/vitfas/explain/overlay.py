"""Heatmaps drawn over the face crop, over the original photo, and as a layers x heads grid.

Images are ``[H, W, 3]`` uint8 RGB numpy arrays throughout. Maps are float arrays over the
patch grid ``[h, w]``; they are upsampled to pixels with OpenCV, rescaled to ``[0, 1]`` and
coloured with a matplotlib colormap.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from vitfas.errors import BadConfigError, BadImageError

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


def _as_image(rgb: np.ndarray, what: str = "image") -> np.ndarray:
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3):
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise BadImageError(f"{what} must be an [H, W, 3] RGB array, got {shape}")
    if rgb.dtype != np.uint8:
        raise BadImageError(f"{what} must be uint8, got {rgb.dtype}")
    return rgb


def to_pixels(
    grid_map: np.ndarray,
    patch_size: tuple[int, int],
    input_size: tuple[int, int],
    out_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Upsample a patch-grid map to pixels.

    Args:
        grid_map: ``[h, w]`` float map.
        patch_size: ``(ph, pw)``.
        input_size: ``(H, W)`` of the model input; when the grid covers a padded area
            (``h * ph > H``) the padding is cut off.
        out_size: ``(H_out, W_out)`` to resize to (default: ``input_size``).

    Returns:
        ``[H_out, W_out]`` float32.
    """
    m = np.asarray(grid_map, dtype=np.float32)
    if m.ndim != 2:
        raise BadConfigError(f"a map must be [h, w], got shape {list(m.shape)}")
    h, w = m.shape
    ph, pw = patch_size
    H, W = input_size
    full = cv2.resize(m, (w * pw, h * ph), interpolation=cv2.INTER_LINEAR)[:H, :W]
    if out_size is not None and tuple(out_size) != (H, W):
        full = cv2.resize(full, (int(out_size[1]), int(out_size[0])),
                          interpolation=cv2.INTER_LINEAR)
    return full


def normalise(m: np.ndarray) -> np.ndarray:
    """Min-max scale to ``[0, 1]`` (a constant map becomes all zeros); NaNs stay NaN."""
    m = np.asarray(m, dtype=np.float32)
    lo, hi = np.nanmin(m), np.nanmax(m)
    if not np.isfinite(lo) or hi - lo <= 1e-12:
        return np.where(np.isnan(m), np.nan, 0.0).astype(np.float32)
    return (m - lo) / (hi - lo)


def colorize(m01: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``[H, W]`` values in ``[0, 1]`` -> ``[H, W, 3]`` uint8 RGB through a matplotlib colormap."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise BadConfigError(f"unknown matplotlib colormap {cmap!r}") from None
    rgba = cm(np.nan_to_num(np.clip(m01, 0.0, 1.0)))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(
    rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """Blend a heatmap over an image.

    Args:
        rgb: ``[H, W, 3]`` uint8.
        heat: ``[H, W]`` float map in pixels (rescaled to [0, 1] here); NaN = no overlay.
        alpha: heatmap opacity.

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    rgb = _as_image(rgb)
    if heat.shape != rgb.shape[:2]:
        raise BadConfigError(
            f"heatmap {list(heat.shape)} does not match the image {list(rgb.shape[:2])}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise BadConfigError(f"alpha must be in [0, 1], got {alpha}")
    valid = ~np.isnan(heat)
    colour = colorize(normalise(heat), cmap).astype(np.float32)
    out = rgb.astype(np.float32)
    mix = (1.0 - alpha) * out + alpha * colour
    out[valid] = mix[valid]
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def overlay_on_crop(
    crop: np.ndarray,
    grid_map: np.ndarray,
    patch_size: tuple[int, int],
    input_size: tuple[int, int],
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Heatmap over the face crop the model saw: ``[Hc, Wc, 3]`` uint8 RGB (crop's size).

    ``input_size`` is the model input the map was computed on; the crop may have any size
    (it was resized to ``input_size`` for the model).
    """
    crop = _as_image(crop, "crop")
    heat = to_pixels(grid_map, patch_size, input_size, crop.shape[:2])
    return overlay(crop, heat, alpha, cmap)


def crop_to_image_affine(box: Box, crop_size: tuple[int, int]) -> np.ndarray:
    """The ``2 x 3`` affine map from crop pixel coordinates to original image coordinates.

    ``box = (x0, y0, x1, y1)`` is the region of the original image (in pixels, edges not
    centres; it may reach outside the image) that was resampled into a crop of
    ``crop_size = (Hc, Wc)`` pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    Hc, Wc = crop_size
    if not (x1 > x0 and y1 > y0):
        raise BadConfigError(f"crop box {tuple(box)} is empty: need x1 > x0 and y1 > y0")
    sx, sy = (x1 - x0) / Wc, (y1 - y0) / Hc
    # pixel centre u + 0.5 in the crop sits at x0 + (u + 0.5) * sx in the image
    return np.array(
        [[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]], dtype=np.float64
    )


def overlay_on_image(
    image: np.ndarray,
    heat_crop: np.ndarray,
    box: Box | None = None,
    affine: np.ndarray | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    draw_box: bool = True,
) -> np.ndarray:
    """Heatmap computed on a crop, drawn back onto the original photo.

    Args:
        image: ``[H, W, 3]`` uint8 original.
        heat_crop: ``[Hc, Wc]`` float map in crop pixels (see :func:`to_pixels`).
        box: ``(x0, y0, x1, y1)`` region of ``image`` the crop was taken from, or
        affine: a ``2 x 3`` crop -> image matrix (for rotated / aligned crops).
        draw_box: outline the crop region.

    Returns:
        ``[H, W, 3]`` uint8 RGB; pixels outside the crop region are unchanged.
    """
    image = _as_image(image)
    if (box is None) == (affine is None):
        raise BadConfigError("give exactly one of box or affine")
    heat_crop = np.asarray(heat_crop, dtype=np.float32)
    if affine is None:
        affine = crop_to_image_affine(box, heat_crop.shape[:2])  # type: ignore[arg-type]
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (2, 3):
        raise BadConfigError(f"affine must be 2 x 3, got {list(affine.shape)}")
    H, W = image.shape[:2]
    heat = cv2.warpAffine(
        normalise(heat_crop), affine, (W, H), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"),
    )
    out = overlay(image, heat, alpha, cmap)
    if draw_box:
        corners = np.array([[0, 0, 1], [heat_crop.shape[1], 0, 1],
                            [heat_crop.shape[1], heat_crop.shape[0], 1],
                            [0, heat_crop.shape[0], 1]], dtype=np.float64)
        corners[:, :2] -= 0.5
        pts = (corners @ affine.T).round().astype(np.int32)
        thick = max(1, round(max(H, W) / 400))
        cv2.polylines(out, [pts.reshape(-1, 1, 2)], True, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``[H, W, 3]`` uint8 RGB array as a PNG (exact pixels, no resampling)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_as_image(rgb)).save(p, format="PNG")
    return p


def layer_head_figure(
    crop: np.ndarray,
    maps: np.ndarray,
    patch_size: tuple[int, int],
    input_size: tuple[int, int],
    path: str | Path,
    alpha: float = 0.6,
    cmap: str = "jet",
    title: str | None = None,
    cell_px: int = 96,
) -> Path:
    """Save a grid of every block (rows) x head (columns) attention map over the crop.

    Args:
        crop: ``[Hc, Wc, 3]`` uint8 face crop.
        maps: ``[layers, heads, h, w]`` raw attention maps (each panel scaled on its own).
        path: PNG to write.
        cell_px: approximate panel height in pixels (width follows the crop's aspect).
    """
    from matplotlib.figure import Figure

    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise BadConfigError(f"maps must be [layers, heads, h, w], got {list(maps.shape)}")
    L, Hh = maps.shape[:2]
    crop = _as_image(crop, "crop")
    ch, cw = cell_px, max(1, round(cell_px * crop.shape[1] / crop.shape[0]))  # keep aspect
    small = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA)
    dpi = 100
    fig = Figure(figsize=(Hh * cw / dpi + 0.6, L * ch / dpi + 0.6), dpi=dpi)
    axes = fig.subplots(L, Hh, squeeze=False)
    for i in range(L):
        for j in range(Hh):
            heat = to_pixels(maps[i, j], patch_size, input_size, (ch, cw))
            ax = axes[i][j]
            ax.imshow(overlay(small, heat, alpha, cmap))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"head {j}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"block {i}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p
