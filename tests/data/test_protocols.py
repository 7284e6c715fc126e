"""OCIM leave-one-out splits."""

from __future__ import annotations

from collections import Counter

import pytest

from vitfas.data.protocols import ocim
from vitfas.errors import BadDataError


def _rows() -> list[dict[str, str]]:
    rows = []
    spec = {  # dataset: {split: videos per label}
        "oulu-npu": {"train": 3, "dev": 2, "test": 2},
        "casia-fasd": {"train": 4, "test": 3},
        "replay-attack": {"train": 2, "dev": 2, "test": 2},
        "msu-mfsd": {"train": 3, "test": 4},
        "celeba-spoof": {"train": 5, "test": 1},
    }
    for ds, splits in spec.items():
        for split, n in splits.items():
            for label in ("live", "spoof"):
                for i in range(n):
                    for frame in ("2", "7"):  # two prepared frames per video
                        rows.append({"path": f"{ds}/{split}/{label}{i}_{frame}.png",
                                     "label": label, "dataset": ds, "split": split,
                                     "video": f"{split}/{label}{i}", "frame": frame,
                                     "attack_type": "none" if label == "live" else "print",
                                     "subject": str(i)})
    return rows


def _c(rows, *cols):
    return Counter(tuple(r[c] for c in cols) for r in rows)


def test_ocim_target_m() -> None:
    out = ocim(_rows(), "M")
    c = _c(out, "split", "dataset")
    # sources O, C, I: train+test parts -> train (x2 labels x2 frames); dev parts -> dev
    assert c[("train", "oulu-npu")] == (3 + 2) * 4
    assert c[("train", "casia-fasd")] == (4 + 3) * 4
    assert c[("train", "replay-attack")] == (2 + 2) * 4
    assert c[("dev", "oulu-npu")] == 2 * 4 and c[("dev", "replay-attack")] == 2 * 4
    assert c[("test", "msu-mfsd")] == (3 + 4) * 4  # whole target (train + test)
    assert ("train", "msu-mfsd") not in c and ("train", "celeba-spoof") not in c
    assert {r["domain"] for r in out if r["dataset"] == "msu-mfsd"} == {"target"}
    src = [r for r in out if r["dataset"] == "oulu-npu" and r["split"] == "train"]
    assert {r["source_split"] for r in src} == {"train", "test"}


def test_ocim_celeba_no_dev_sources() -> None:
    out = ocim(_rows(), "O", celeba=True, source_dev=False)
    c = _c(out, "split", "dataset")
    assert c[("train", "celeba-spoof")] == (5 + 1) * 4
    assert not any(r["split"] == "dev" for r in out)
    assert c[("test", "oulu-npu")] == (3 + 2) * 4  # O's Dev_files are not tested on
    out = ocim(_rows(), "I", sources=["O", "M"])
    assert {r["dataset"] for r in out if r["split"] == "train"} == {"oulu-npu", "msu-mfsd"}


def test_ocim_k_shot() -> None:
    out = ocim(_rows(), "C", k_shot=2, seed=3)
    shots = [r for r in out if r["kshot"] == "1"]
    assert all(r["split"] == "train" and r["dataset"] == "casia-fasd" for r in shots)
    vids = {(r["label"], r["video"]) for r in shots}
    assert Counter(label for label, _ in vids) == {"live": 2, "spoof": 2}
    assert all(v.startswith("train/") for _, v in vids)  # drawn from the target's train part
    test_vids = {(r["label"], r["video"]) for r in out if r["split"] == "test"}
    assert not vids & test_vids
    assert len([r for r in out if r["split"] == "test"]) == (4 + 3) * 4 - 4 * 2
    assert ocim(_rows(), "C", k_shot=2, seed=3) == out  # deterministic
    assert ocim(_rows(), "C", k_shot=2, seed=4) != out
    with pytest.raises(BadDataError, match="only 4 live"):
        ocim(_rows(), "C", k_shot=5)


def test_ocim_errors() -> None:
    with pytest.raises(BadDataError, match="expected one of O, C, I, M"):
        ocim(_rows(), "X")
    rows = [r for r in _rows() if r["dataset"] != "msu-mfsd"]
    with pytest.raises(BadDataError, match=r"no rows of dataset\(s\) \['msu-mfsd'\]"):
        ocim(rows, "O")
    with pytest.raises(BadDataError, match="sources"):
        ocim(_rows(), "O", sources=["O"])
