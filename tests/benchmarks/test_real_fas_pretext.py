"""benchmarks/real_fas/simulate_attacks.py and mae_pool.py on a made-up manifest: which rows
go in, which stay out (the test split, test repositories, duplicates of test crops)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from vitfas.data.manifest import read_manifest, resolve_path, write_manifest

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "real_fas"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """crops/<owner>/... and a manifest: owner A (train/dev/test), owner B (test only),
    owner C (not in the manifest), one C crop byte-identical to a test crop."""
    crops = tmp_path / "crops"
    rows = []
    spec = [("A", "live", "train", 0), ("A", "live", "train", 0), ("A", "spoof", "train", 0),
            ("A", "live", "dev", 0), ("A", "live", "train", 1), ("A", "live", "test", 0),
            ("B", "spoof", "test", 0)]
    for i, (owner, label, split, fta) in enumerate(spec):
        p = crops / owner / f"{i}.png"
        _img(p, i)
        rows.append({"path": f"../crops/{owner}/{i}.png", "label": label, "split": split,
                     "repo": f"{owner}/repo", "fta": str(fta)})
    _img(crops / "A" / "extra.png", 100)  # a test repository's crop outside the manifest
    _img(crops / "C" / "c0.png", 101)
    (crops / "C" / "copy_of_test.png").write_bytes((crops / "A" / "5.png").read_bytes())
    manifest = tmp_path / "proto" / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest, crops


def test_simulated_set_uses_only_live_train_dev_rows(data: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    sim = _load("simulate_attacks")
    manifest, _ = data
    out = tmp_path / "sim"
    path, counts, bad = sim.build(manifest, out, size=16)
    assert not bad
    rows = read_manifest(path)
    # 2 live train rows (the FTA row is left out) + 1 live dev row, 4 images each
    assert counts == {("train", "live"): 4, ("train", "spoof"): 4,
                      ("dev", "live"): 2, ("dev", "spoof"): 2}
    assert sorted(r["attack_type"] for r in rows if r["split"] == "dev") == \
        ["none", "none", "print", "replay"]
    sources = {r["source"] for r in rows}
    assert sources == {"../crops/A/0.png", "../crops/A/1.png", "../crops/A/3.png"}
    for r in rows:
        img = np.asarray(Image.open(resolve_path(path, r)))
        # the real live crop is referenced unchanged; simulated images have the asked size
        assert img.shape == ((40, 40, 3) if r["path"].endswith(("0.png", "1.png", "3.png"))
                             and "images" not in r["path"] else (16, 16, 3))
    with pytest.raises(SystemExit, match="test split"):
        sim.build(manifest, tmp_path / "sim2", splits=("train", "test"))


def test_mae_pool_leaves_out_test_rows_repos_and_copies(data: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    pool_mod = _load("mae_pool")
    manifest, crops = data
    pool, counts = pool_mod.build_pool(manifest, crops)
    names = sorted(p.relative_to(crops.resolve()).as_posix() for p in pool)
    # train/dev rows (no FTA), all of owner C except the copy of a test crop; nothing
    # else of the test owners A and B
    assert names == ["A/0.png", "A/1.png", "A/2.png", "A/3.png", "C/c0.png"]
    assert counts["dropped: identical to a test crop"] == 1
    out = tmp_path / "pool.csv"
    assert pool_mod.main([str(manifest), str(crops), str(out)]) == 0
    with out.open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5
