"""Reading and writing images.

Every image that enters vitfas goes through :func:`load_image` (files) or
:func:`decode_image` (bytes, e.g. uploads): the result is always an ``[H, W, 3]`` uint8
RGB array with the EXIF orientation already applied, so a photo taken with a rotated phone
comes out upright. Failures raise :class:`~vitfas.errors.BadImageError` naming the file.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitfas.errors import BadImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def is_image_file(path: str | Path) -> bool:
    """True when the file name has one of the image extensions vitfas reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb_array(img: Image.Image, name: str) -> np.ndarray:
    try:
        img.load()  # force full decoding so truncated files fail here
        img = ImageOps.exif_transpose(img)
        if img.mode != "RGB":
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            img = img.convert("RGB")
        arr = np.array(img, dtype=np.uint8)  # a writable copy
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImageError(f"{name}: cannot decode image ({exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadImageError(f"{name}: expected an [H, W, 3] image, decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB with its EXIF orientation applied.

    Args:
        path: image file (JPEG, PNG, BMP, WebP, TIFF, ...).

    Returns:
        ``[H, W, 3]`` uint8 RGB array, upright.

    Raises:
        BadImageError: the file is missing, empty, truncated or not an image; the message
            names the file.
    """
    p = Path(path)
    if not p.exists():
        raise BadImageError(f"{p}: no such file")
    if not p.is_file():
        raise BadImageError(f"{p}: expected an image file, found a directory or special file")
    size = p.stat().st_size
    if size == 0:
        raise BadImageError(f"{p}: empty file (0 bytes)")
    return _open_rgb(p, str(p), size)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (an upload) like :func:`load_image` does a file.

    Args:
        data: the encoded file content.
        name: what to call it in error messages (e.g. the uploaded file name).

    Returns:
        ``[H, W, 3]`` uint8 RGB array, upright.
    """
    if not data:
        raise BadImageError(f"{name}: empty image data (0 bytes)")
    return _open_rgb(io.BytesIO(data), name, len(data))


def _open_rgb(source: Path | io.BytesIO, name: str, size: int) -> np.ndarray:
    """Decode ``source`` with PIL into an upright RGB array; PIL's failures become
    :class:`BadImageError` naming ``name`` (``size`` bytes)."""
    try:
        with Image.open(source) as img:
            return _to_rgb_array(img, name)
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{name}: not a recognised image format ({size} bytes)") from exc
    except BadImageError:
        raise
    except OSError as exc:
        raise BadImageError(f"{name}: cannot read image ({exc})") from exc


def save_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write an ``[H, W, 3]`` uint8 RGB array; the format follows the extension.

    The parent folder is created. JPEG uses ``quality``; PNG is lossless.
    """
    p = Path(path)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadImageError(
            f"{p}: expected a uint8 [H, W, 3] array to save, got {rgb.dtype} {tuple(rgb.shape)}"
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(rgb))
    kwargs: dict[str, object] = {}
    if p.suffix.lower() in (".jpg", ".jpeg"):
        kwargs = {"quality": quality, "subsampling": 0}
    img.save(p, **kwargs)
