"""The demo set: real scikit-image photos offline, subject-disjoint splits, manifest counts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from vitfas.data.io import load_image
from vitfas.data.manifest import COLUMNS, read_manifest
from vitfas.demo.dataset import assign_splits, build_demo_set, demo_sources


def test_sources_ship_with_scikit_image() -> None:
    src = demo_sources()
    assert len(src) == 102
    names = [s.subject for s in src]
    assert len(set(names)) == 102 and names[-2:] == ["astronaut", "coffee"]
    lfw = [s for s in src if s.subject.startswith("lfw")]
    assert all(s.image.shape == (25, 25) for s in lfw)  # the LFW crops: 25 x 25 grey faces
    assert all(s.image.min() >= 0.0 and s.image.max() <= 1.0 for s in src)
    astro = src[-2].image
    assert astro.ndim == 3 and astro.shape[0] == astro.shape[1] > 80  # colour face crop


def test_splits_are_disjoint_pinned_and_seeded() -> None:
    subjects = [f"lfw{i:03d}" for i in range(100)] + ["astronaut", "coffee"]
    a = assign_splits(subjects, seed=0)
    assert set(a) == set(subjects)
    assert a["astronaut"] == "test" and a["coffee"] == "train"
    n = {s: sum(v == s for v in a.values()) for s in ("train", "dev", "test")}
    assert n == {"train": 61, "dev": 20, "test": 21}
    assert assign_splits(subjects, seed=0) == a
    assert assign_splits(subjects, seed=1) != a
    small = assign_splits(["x", "y", "z"], seed=0, pinned={})
    assert sorted(small.values()) == ["dev", "test", "train"]


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_set(tmp_path_factory.mktemp("demo") / "data", size=32, live=2,
                          prints=1, replays=1, seed=0, n_lfw=9, progress=False)


def test_manifest_counts_and_columns(demo_set: Path) -> None:
    rows = read_manifest(demo_set)
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)
    assert len(rows) == 11 * 4  # 9 LFW + astronaut + coffee, 2 live + 1 print + 1 replay
    by_kind = defaultdict(int)
    for r in rows:
        by_kind[r["attack_type"]] += 1
        assert r["dataset"] == "demo"
        assert r["label"] == ("live" if r["attack_type"] == "none" else "spoof")
        assert r["simulated"] == ("0" if r["label"] == "live" else "1")
        assert r["path"].startswith(f"{r['split']}/")
    assert dict(by_kind) == {"none": 22, "print": 11, "replay": 11}
    for split in ("train", "dev", "test"):
        kinds = {r["attack_type"] for r in rows if r["split"] == split}
        assert kinds == {"none", "print", "replay"}, split


def test_subject_disjoint(demo_set: Path) -> None:
    rows = read_manifest(demo_set)
    split_of: dict[str, set[str]] = defaultdict(set)
    source_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        split_of[r["subject"]].add(r["split"])
        source_of[r["subject"]].add(r["source"])
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert all(len(s) == 1 for s in source_of.values())  # one photo per subject
    subjects = {s: next(iter(v)) for s, v in split_of.items()}
    assert subjects["astronaut"] == "test" and subjects["coffee"] == "train"


def test_images_readme_and_parameters(demo_set: Path) -> None:
    root = demo_set.parent
    rows = read_manifest(demo_set)
    for r in rows:
        img = load_image(root / r["path"])
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    readme = (root / "README.md").read_text()
    assert "SIMULATED" in readme and "lfw_subset" in readme
    params = (root / "simulation.jsonl").read_text().splitlines()
    assert len(params) == 22  # one line per attack image


def test_build_is_deterministic(tmp_path: Path, demo_set: Path) -> None:
    again = build_demo_set(tmp_path / "data", size=32, live=2, prints=1, replays=1, seed=0,
                           n_lfw=9, progress=False)
    for rel in ("test/replay/astronaut_0.png", "train/print/coffee_0.png"):
        assert (again.parent / rel).read_bytes() == (demo_set.parent / rel).read_bytes()
