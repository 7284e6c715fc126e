"""Hostile images on every data path: a decompression bomb (a tiny PNG whose header claims
100,000 x 100,000 pixels) is an "unreadable" file with its reason, never a PIL traceback;
files a layout does not read are counted and reported."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitfas import cli
from vitfas.data import io as vio
from vitfas.data.manifest import read_manifest, write_manifest
from vitfas.errors import BadImageError, TooManyPixelsError

from .helpers import write_image


@pytest.fixture
def folder(tmp_path: Path, bomb_png) -> Path:
    """``ds/live/{a.png, bomb.png}``, ``ds/spoof/print/b.png``."""
    root = tmp_path / "ds"
    write_image(root / "live" / "a.png", 100)
    write_image(root / "spoof" / "print" / "b.png", 30)
    (root / "live" / "bomb.png").write_bytes(bomb_png())
    return root


def test_bomb_is_a_bad_image_before_any_decoding(bomb_png, tmp_path: Path) -> None:
    data = bomb_png()
    assert len(data) < 10_000
    f = tmp_path / "bomb.png"
    f.write_bytes(data)
    for call in (lambda: vio.load_image(f), lambda: vio.decode_image(data, "up.png"),
                 lambda: vio.image_header(f)):
        with pytest.raises(TooManyPixelsError, match="too many pixels"):
            call()
    # under PIL's own limit but over ours: refused from the header, with both numbers
    with pytest.raises(TooManyPixelsError, match=r"3000x3000 = 9000000 pixels, the limit "
                                                 r"is 1000000"):
        vio.decode_image(bomb_png(3000, 3000), "b.png", limit=1_000_000)


def test_one_pixel_limit_from_env_and_setter(bomb_png, monkeypatch) -> None:
    small = bomb_png(3000, 3000)
    assert vio.image_header(small) == ("PNG", 3000, 3000)
    monkeypatch.setenv("VITFAS_MAX_PIXELS", "1000000")
    with pytest.raises(TooManyPixelsError, match="limit is 1000000"):
        vio.image_header(small)
    vio.set_max_pixels(2000)
    try:
        assert vio.max_pixels() == 2000
        with pytest.raises(TooManyPixelsError):
            vio.decode_image(bomb_png(64, 64))  # 4096 pixels
    finally:
        vio.set_max_pixels(None)
    monkeypatch.delenv("VITFAS_MAX_PIXELS")
    assert vio.max_pixels() == vio.DEFAULT_MAX_PIXELS


def test_gif_is_read_as_an_image(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="GIF")
    f = tmp_path / "x.gif"
    f.write_bytes(buf.getvalue())
    assert vio.is_image_file(f)
    out = vio.load_image(f)
    assert out.shape == (6, 8, 3) and tuple(out[0, 0]) == (255, 0, 0)


def test_index_lists_the_bomb_with_its_reason(folder: Path, tmp_path: Path, capsys) -> None:
    rc = cli.main(["data", "index", "-l", "folder", str(folder), "-o", str(tmp_path / "m.csv")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 unreadable file(s)" in err and "bomb.png: too many pixels" in err
    assert "Traceback" not in err


def test_index_counts_and_reports_skipped_files(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    write_image(root / "live" / "a.png")
    write_image(root / "spoof" / "print" / "b.png")
    Image.new("RGB", (8, 8)).save(root / "live" / "c.gif")
    (root / "live" / "notes.txt").write_text("hello")
    (root / "spoof" / "print" / "scan.xyz").write_bytes(b"\0" * 10)
    out = tmp_path / "m.csv"
    assert cli.main(["data", "index", "-l", "folder", str(root), "-o", str(out),
                     "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 3  # the GIF is read
    assert sorted(Path(p).name for p in info["skipped"]) == ["notes.txt", "scan.xyz"]
    assert cli.main(["data", "index", "-l", "folder", str(root), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped 2 file(s) that are neither images nor videos" in text
    assert "notes.txt" in text


def test_prepare_goes_on_past_the_bomb(folder: Path, tmp_path: Path, capsys) -> None:
    m = tmp_path / "m.csv"
    assert cli.main(["data", "index", "-l", "folder", str(folder), "-o", str(m),
                     "--check", "none"]) == 0
    rows = read_manifest(m)
    write_manifest(m, [{**r, "split": "train"} for r in rows])
    capsys.readouterr()
    rc = cli.main(["-q", "data", "prepare", str(m), "-o", str(tmp_path / "crops"),
                   "--detector", "none", "--size", "16", "--json"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total"]["crops"] == 2 and s["total"]["unreadable"] == 1
    (bad,) = [f for f in s["failures"] if f["reason"] == "unreadable"]
    assert bad["path"].endswith("bomb.png") and "too many pixels" in bad["detail"]


def test_train_and_eval_datasets_skip_or_flag_the_bomb(folder: Path, tmp_path: Path) -> None:
    from vitfas.data.datasets import ManifestDataset
    from vitfas.train.data import DataConfig, build_split, unreadable_counts

    m = tmp_path / "m.csv"
    assert cli.main(["-q", "data", "index", "-l", "folder", str(folder), "-o", str(m),
                     "--check", "none"]) == 0
    write_manifest(m, [{**r, "split": "train"} for r in read_manifest(m)])
    ds = build_split(DataConfig(path=str(m), img_size=16), "train", True, ["spoof", "live"])
    assert len(ds) == 2 and not any(r["path"].endswith("bomb.png") for r in ds.rows)
    assert len(ds.targets) == 2 and ds.unreadable[0][0].endswith("bomb.png")
    assert "too many pixels" in ds.unreadable[0][1]
    assert unreadable_counts(ds) == {"none": 1}  # a live row: dev/test count it as an FTA
    # eval reads every row: the bomb is a BadImageError (counted as FTA by eval's loader)
    raw = ManifestDataset(m)
    j = next(i for i, r in enumerate(raw.rows) if r["path"].endswith("bomb.png"))
    with pytest.raises(BadImageError, match="bomb.png: too many pixels"):
        raw.load(j)


def test_mae_pretraining_skips_the_bomb(folder: Path) -> None:
    from vitfas.pretrain.mae import collect_images

    found = collect_images(folder)
    assert sorted(p.name for p in found.paths) == ["a.png", "b.png"]
    (why,) = [w for p, w in found.skipped if p.endswith("bomb.png")]
    assert "too many pixels" in why
