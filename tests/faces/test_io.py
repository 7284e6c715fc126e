"""vitfas.data.io: EXIF orientation, colour conversion and errors that name the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitfas.data.io import decode_image, load_image, save_image
from vitfas.errors import BadImageError


def test_exif6_fixture_is_upright(face_fixtures: Path) -> None:
    path = face_fixtures / "live_exif6.jpg"
    with Image.open(path) as raw:
        assert raw.size == (640, 480)  # stored landscape
        assert raw.getexif().get(0x0112) == 6
    rgb = load_image(path)
    assert rgb.shape == (640, 480, 3)  # upright portrait, H=640, W=480
    assert rgb.dtype == np.uint8


def _exif_jpeg(tmp_path: Path, orientation: int) -> tuple[Path, np.ndarray]:
    # 4 x 6 (W x H) image with distinct quadrants; lossless-ish colours for JPEG via PNG
    arr = np.zeros((6, 4, 3), np.uint8)
    arr[:3, :2] = (255, 0, 0)  # top-left red
    arr[:3, 2:] = (0, 255, 0)  # top-right green
    arr[3:, :2] = (0, 0, 255)  # bottom-left blue
    arr[3:, 2:] = (255, 255, 255)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    img.save(path, exif=exif.tobytes())
    return path, arr


def test_exif_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    path, arr = _exif_jpeg(tmp_path, 6)
    rgb = load_image(path)
    # orientation 6: stored image must be rotated 90 degrees clockwise to display
    assert rgb.shape == (4, 6, 3)
    np.testing.assert_array_equal(rgb, np.rot90(arr, k=-1))


def test_exif_orientation_1_untouched(tmp_path: Path) -> None:
    path, arr = _exif_jpeg(tmp_path, 1)
    np.testing.assert_array_equal(load_image(path), arr)


def test_gray_and_rgba_become_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 7), 100, np.uint8)).save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (5, 7, 3) and (g == 100).all()
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent red -> white background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert (load_image(tmp_path / "a.png") == 255).all()


def test_decode_image_matches_load(face_fixtures: Path) -> None:
    path = face_fixtures / "print_a4_exif6.jpg"
    np.testing.assert_array_equal(decode_image(path.read_bytes(), "x.jpg"), load_image(path))


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.jpg", b"", "0 bytes"),
        ("text.jpg", b"this is not an image", "not a recognised image"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(BadImageError, match=needle) as info:
        load_image(p)
    assert str(p) in str(info.value)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, "JPEG"
    )
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError) as info:
        load_image(p)
    assert str(p) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="no such file") as info:
        load_image(tmp_path / "nope.png")
    assert "nope.png" in str(info.value)
    with pytest.raises(BadImageError, match="directory"):
        load_image(tmp_path)


def test_decode_empty_bytes_names_upload() -> None:
    with pytest.raises(BadImageError, match=r"upload\.png"):
        decode_image(b"", "upload.png")


def test_save_roundtrip_png(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 255, (9, 11, 3), np.uint8)
    save_image(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(load_image(tmp_path / "sub" / "x.png"), arr)
