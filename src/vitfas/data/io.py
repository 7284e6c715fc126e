"""Reading and writing images.

Every image that enters vitfas goes through :func:`load_image` (files) or
:func:`decode_image` (bytes, e.g. uploads): the result is always an ``[H, W, 3]`` uint8
RGB array with the EXIF orientation already applied, so a photo taken with a rotated phone
comes out upright. Failures raise :class:`~vitfas.errors.BadImageError` naming the file.

Every opener (:func:`load_image`, :func:`decode_image`, :func:`image_header`) reads the
header first and refuses an image of more than :func:`max_pixels` pixels *before* decoding
it: a decompression bomb (a few hundred bytes claiming 100,000 x 100,000 pixels) becomes a
:class:`~vitfas.errors.BadImageError` saying "too many pixels", never a PIL traceback or an
out-of-memory kill. The limit is one number for the whole process: the environment variable
``VITFAS_MAX_PIXELS`` or :func:`set_max_pixels` (``vitfas serve --max-pixels`` sets it).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitfas.errors import BadImageError, TooManyPixelsError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)

DEFAULT_MAX_PIXELS = 64_000_000  # above any phone camera's full-resolution photo (50 MP)
_max_pixels: int | None = None


def max_pixels() -> int:
    """The largest width x height any vitfas opener accepts (``VITFAS_MAX_PIXELS`` or
    :func:`set_max_pixels`; default :data:`DEFAULT_MAX_PIXELS`)."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get("VITFAS_MAX_PIXELS", "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            raise BadImageError(
                f"VITFAS_MAX_PIXELS: expected a positive pixel count, got {env!r}") from None
        if value > 0:
            _raise_pil_limit(value)
            return value
    return DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """Set the process-wide pixel limit (``None``: back to the environment / default)."""
    global _max_pixels
    if limit is not None and int(limit) < 1:
        raise BadImageError(f"max_pixels: expected a positive pixel count, got {limit}")
    _max_pixels = None if limit is None else int(limit)
    if _max_pixels is not None:
        _raise_pil_limit(_max_pixels)


def _raise_pil_limit(limit: int) -> None:
    # PIL refuses > 2 x MAX_IMAGE_PIXELS inside Image.open; keep it above our own limit so
    # that ours is the one that decides (ours is checked before any pixel is decoded)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


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
    p = _existing_file(path)
    return _open_rgb(p, str(p), p.stat().st_size)


def _existing_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadImageError(f"{p}: no such file")
    if not p.is_file():
        raise BadImageError(f"{p}: expected an image file, found a directory or special file")
    if p.stat().st_size == 0:
        raise BadImageError(f"{p}: empty file (0 bytes)")
    return p


def decode_image(data: bytes, name: str = "<bytes>", limit: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (an upload) like :func:`load_image` does a file.

    Args:
        data: the encoded file content.
        name: what to call it in error messages (e.g. the uploaded file name).
        limit: most pixels accepted (default :func:`max_pixels`).

    Returns:
        ``[H, W, 3]`` uint8 RGB array, upright.
    """
    if not data:
        raise BadImageError(f"{name}: empty image data (0 bytes)")
    return _open_rgb(io.BytesIO(data), name, len(data), limit)


def _check_pixels(name: str, w: int, h: int, limit: int) -> None:
    if w * h > limit:
        raise TooManyPixelsError(f"{name}: too many pixels: the header says {w}x{h} = {w * h} "
                            f"pixels, the limit is {limit} (VITFAS_MAX_PIXELS)")
    if w < 1 or h < 1:
        raise BadImageError(f"{name}: image has size {w}x{h}")


def _open_guarded(source: Path | io.BytesIO, name: str, size: int,
                  limit: int | None) -> Image.Image:
    """``Image.open`` with PIL's failures (bombs included) as :class:`BadImageError` and
    the pixel limit checked on the header; nothing is decoded yet."""
    limit = max_pixels() if limit is None else int(limit)
    try:
        with warnings.catch_warnings():  # the limit below is ours, PIL's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise TooManyPixelsError(f"{name}: too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{name}: not a recognised image format ({size} bytes)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImageError(f"{name}: cannot read image ({exc})") from exc
    try:
        _check_pixels(name, *img.size, limit)
    except BadImageError:
        img.close()
        raise
    return img


def _open_rgb(source: Path | io.BytesIO, name: str, size: int,
              limit: int | None = None) -> np.ndarray:
    """Decode ``source`` with PIL into an upright RGB array; PIL's failures become
    :class:`BadImageError` naming ``name`` (``size`` bytes)."""
    img = _open_guarded(source, name, size, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _to_rgb_array(img, name)
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixelsError(f"{name}: too many pixels ({exc})") from exc
    except OSError as exc:
        raise BadImageError(f"{name}: cannot read image ({exc})") from exc
    finally:
        img.close()


def image_header(source: str | Path | bytes, name: str | None = None,
                 limit: int | None = None) -> tuple[str, int, int]:
    """Read only the header of an image file (or encoded bytes): ``(format, width,
    height)``, after the same checks as :func:`load_image` (pixel limit included).

    Raises:
        BadImageError: missing, empty, not an image, or more than ``limit`` pixels
            (default :func:`max_pixels`); the message names the file.
    """
    if isinstance(source, (bytes, bytearray)):
        label = name or "<bytes>"
        if not source:
            raise BadImageError(f"{label}: empty image data (0 bytes)")
        img = _open_guarded(io.BytesIO(source), label, len(source), limit)
    else:
        p = _existing_file(source)
        img = _open_guarded(p, name or str(p), p.stat().st_size, limit)
    with img:
        return img.format or "?", img.size[0], img.size[1]


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
