"""Manifest I/O, ManifestDataset, transforms and the balancing sampler."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vitfas.data.datasets import ManifestDataset, balance_weights, balanced_sampler
from vitfas.data.manifest import (
    COLUMNS,
    read_manifest,
    rebase_rows,
    resolve_path,
    write_manifest,
)
from vitfas.data.transforms import build_transforms
from vitfas.errors import BadConfigError, BadDataError

from .helpers import write_image, write_video


def _row(path: str, label: str, **kw: str) -> dict[str, str]:
    r = {c: "" for c in COLUMNS}
    r.update(path=path, label=label, attack_type="none" if label == "live" else "print")
    r.update(kw)
    return r


def test_manifest_roundtrip_keeps_extra_columns(tmp_path: Path) -> None:
    rows = [_row("a.png", "live", split="train", quality="hi"), _row("b.png", "spoof")]
    p = write_manifest(tmp_path / "m.csv", rows)
    header = p.read_text().splitlines()[0].split(",")
    assert header == [*COLUMNS, "quality"]
    back = read_manifest(p)
    assert back[0]["quality"] == "hi" and back[1]["quality"] == ""
    assert back[0]["path"] == "a.png"
    assert resolve_path(p, back[0]) == (tmp_path / "a.png").resolve()


def test_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match="not found"):
        read_manifest(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.png,live\n")
    with pytest.raises(BadDataError, match=r"bad\.csv.*lacks column") as info:
        read_manifest(bad)
    assert "attack_type" in str(info.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BadDataError, match="empty manifest"):
        read_manifest(empty)


def test_rebase_rows(tmp_path: Path) -> None:
    rows = [_row("img/a.png", "live")]
    out = rebase_rows(rows, tmp_path / "x" / "m.csv", tmp_path / "y" / "z" / "n.csv")
    assert out[0]["path"] == "../../x/img/a.png"


def test_dataset_items_labels_and_split(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "live.png", 200)
    write_image(tmp_path / "img" / "spoof.png", 50)
    write_video(tmp_path / "v.avi", frames=6)
    rows = [
        _row("img/live.png", "live", split="train"),
        _row("img/spoof.png", "spoof", split="train"),
        _row("v.avi", "spoof", split="test", frame="3"),
    ]
    m = write_manifest(tmp_path / "m.csv", rows)
    ds = ManifestDataset(m)
    assert ds.class_names == ["spoof", "live"] and ds.live_index == 1
    assert ds.targets == [1, 0, 0]
    x, y = ds[0]
    assert x.shape == (3, 24, 32) and x.dtype == torch.float32 and y == 1
    assert float(x.mean()) == pytest.approx(200 / 255, abs=1e-6)
    xv, _ = ds[2]  # frame 3 of the video has value 30
    assert float(xv.mean()) == pytest.approx(30 / 255, abs=4 / 255)
    assert len(ManifestDataset(m, split="train")) == 2
    tr = ManifestDataset(m, transform=build_transforms(False, 16, (0.5,) * 3, (0.5,) * 3))
    x, _ = tr[1]
    assert x.shape == (3, 16, 16)
    assert float(x.mean()) == pytest.approx((50 / 255 - 0.5) / 0.5, abs=1e-5)


def test_dataset_generic_classes_and_errors(tmp_path: Path) -> None:
    rows = [_row("a.png", "cat"), _row("b.png", "dog")]
    ds = ManifestDataset(rows, root=tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.live_index is None
    with pytest.raises(BadDataError, match="not among class_names"):
        ManifestDataset(rows, class_names=["cat"], root=tmp_path)
    with pytest.raises(BadDataError, match="no rows"):
        ManifestDataset(rows, split="dev", root=tmp_path)
    with pytest.raises(BadDataError, match="frame index"):
        write_video(tmp_path / "v.avi", frames=2)
        ManifestDataset([_row("v.avi", "live")], root=tmp_path).load(0)


def test_train_transform_randomness_and_shapes() -> None:
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    t = build_transforms(True, 32, rotation=10, grayscale=0.2, blur=0.5, erasing=0.5)
    a, b = t(img), t(img)
    assert a.shape == b.shape == (3, 32, 32)
    assert not torch.equal(a, b)
    e = build_transforms(False, 32)
    assert torch.equal(e(img), e(img))
    with pytest.raises(BadConfigError, match=r"unknown key.*valid keys"):
        build_transforms(True, 32, mixup=0.2)


def test_jpeg_augmentation_compresses_and_checks_quality() -> None:
    """JPEG at quality 5 blurs a dot grid; quality 100 barely changes it."""
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1).astype(np.uint8)
    img[::4, ::4] = 255  # a dot grid, like a print's halftone
    keep = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0.0, "brightness": 0.0,
            "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
    plain = build_transforms(False, 32)(img)
    low = build_transforms(True, 32, jpeg=1.0, jpeg_quality=(5, 5), **keep)(img)
    high = build_transforms(True, 32, jpeg=1.0, jpeg_quality=(100, 100), **keep)(img)
    assert low.shape == high.shape == (3, 32, 32)
    # measured 0.44 and 0.05 (normalised units): compression grows as quality falls
    assert (low - plain).abs().mean() > 0.3
    assert (high - plain).abs().mean() < (low - plain).abs().mean() / 4
    with pytest.raises(BadConfigError, match="jpeg_quality"):
        build_transforms(True, 32, jpeg=0.5, jpeg_quality=(90, 20))


def test_balance_weights_math() -> None:
    rows = [{"label": "live", "dataset": "a"}] * 1 + [{"label": "spoof", "dataset": "a"}] * 3 + [
        {"label": "spoof", "dataset": "b"}
    ] * 6
    w = balance_weights(rows)
    # live: 1 row -> weight 1; spoof: 9 rows -> 1/9 each; total per class = 1
    assert w[0] == 1.0 and w[1] == pytest.approx(1 / 9)
    wd = balance_weights(rows, ("dataset", "label"))
    assert wd[1] == pytest.approx(1 / 3) and wd[-1] == pytest.approx(1 / 6)


def test_balanced_sampler_draws_evenly() -> None:
    rows = [{"label": "live", "dataset": "a"}] * 10 + [{"label": "spoof", "dataset": "a"}] * 90
    g = torch.Generator().manual_seed(0)
    idx = list(balanced_sampler(rows, num_samples=4000, generator=g))
    live = sum(1 for i in idx if rows[i]["label"] == "live") / len(idx)
    assert live == pytest.approx(0.5, abs=0.04)
    rows2 = rows + [{"label": "spoof", "dataset": "b"}] * 300
    idx = list(balanced_sampler(rows2, domains=True, num_samples=6000, generator=g))
    c = Counter((rows2[i]["dataset"], rows2[i]["label"]) for i in idx)
    for k in [("a", "live"), ("a", "spoof"), ("b", "spoof")]:
        assert c[k] / 6000 == pytest.approx(1 / 3, abs=0.04)
