"""A reference measurement on the real development set (a throwaway method, not vitfas API).

``fusion``: logistic-regression score fusion of two methods' ``scores.csv`` (fitted on the
dev split, threshold at the dev EER, applied unchanged to test), next to each method alone.

It prints test HTER at the dev-EER threshold (single-crossing rule: the threshold whose
FAR and FRR are closest on dev), test AUC and test EER. Failure-to-acquire rows are left
out (the figures are therefore not exactly vitfas's, which count them)::

    R=/work/real_fas
    python benchmarks/real_fas/references.py fusion \
        $R/runs/cross-camera/lbp-color/scores.csv $R/runs/cross-camera/vit/eval/scores.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def eer_threshold(scores: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    """``[N]`` scores, ``[N]`` 0/1 live labels -> (threshold, EER) at the closest FAR/FRR."""
    best = (np.inf, 0.0, 0.0)
    for t in np.unique(scores):
        far = float(np.mean(scores[live == 0] >= t))
        frr = float(np.mean(scores[live == 1] < t))
        if abs(far - frr) < best[0]:
            best = (abs(far - frr), float(t), (far + frr) / 2)
    return best[1], best[2]


def hter(scores: np.ndarray, live: np.ndarray, t: float) -> float:
    """(FAR + FRR) / 2 at threshold ``t`` (accept when score >= t)."""
    return (float(np.mean(scores[live == 0] >= t)) + float(np.mean(scores[live == 1] < t))) / 2


def report(name: str, s: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> None:
    """Print dev EER, then test HTER at the dev threshold, test AUC and test EER."""
    from sklearn.metrics import roc_auc_score

    t, dev_eer = eer_threshold(s["dev"], y["dev"])
    test_hter = 100 * hter(s["test"], y["test"], t)
    test_eer = 100 * eer_threshold(s["test"], y["test"])[1]
    auc = roc_auc_score(y["test"], s["test"])
    print(f"{name:28s} dev EER {100 * dev_eer:5.1f}% | test HTER@dev {test_hter:5.1f}%"
          f"  AUC {auc:.3f}  EER {test_eer:5.1f}%")


def _read_scores(path: Path) -> dict[str, tuple[str, str, float]]:
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if (r.get("fta", "0") in ("1", "true") or r["score"] == ""
                    or r["split"] not in ("dev", "test")):
                continue
            out[r["path"]] = (r["split"], r["label"], float(r["score"]))
    return out


def fusion(a_path: Path, b_path: Path) -> None:
    """Each method alone, then LR fusion of their logits fitted on dev."""
    from sklearn.linear_model import LogisticRegression

    a, b = _read_scores(a_path), _read_scores(b_path)
    paths = sorted(set(a) & set(b))
    split = np.array([a[p][0] for p in paths])
    live = np.array([int(a[p][1] == "live") for p in paths])
    eps = 1e-6
    x = np.stack([[a[p][2] for p in paths], [b[p][2] for p in paths]], 1).clip(eps, 1 - eps)
    x = np.log(x / (1 - x))
    y = {k: live[split == k] for k in ("dev", "test")}
    for i, path in enumerate((a_path, b_path)):
        report(path.parent.name if path.parent.name != "eval" else path.parent.parent.name,
               {k: x[split == k, i] for k in y}, y)
    lr = LogisticRegression().fit(x[split == "dev"], y["dev"])
    fused = lr.decision_function(x)
    report("LR fusion (fit on dev)", {k: fused[split == k] for k in y}, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fusion", help="LR fusion of two scores.csv files")
    f.add_argument("a", type=Path)
    f.add_argument("b", type=Path)
    args = ap.parse_args()
    fusion(args.a, args.b)


if __name__ == "__main__":
    main()
