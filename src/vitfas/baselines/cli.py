"""``vitfas baseline lbp MANIFEST -o OUT [--features gray|color]``: the LBP + SVM baseline.

Prints the same summary as ``vitfas eval`` (``--json``: the metrics payload); OUT holds
``metrics.json``, ``report.md``, the figures, ``scores.csv`` (as ``vitfas eval`` writes
them) and the bundle (``config.json``, ``model.skops``, ``README.md``) for
``vitfas predict OUT PHOTO...``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vitfas.baselines.lbp import DEFAULT_SIZE, FEATURES, METHODS
from vitfas.baselines.svm import GRID_SAMPLES


def _radii(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--radii: expected comma-separated numbers such as 1 or 1,2; got {text!r}"
        ) from None


def register(subparsers: Any) -> None:
    """Add ``vitfas baseline``."""
    p = subparsers.add_parser(
        "baseline",
        help="classical baselines (LBP + RBF SVM) trained and evaluated on a manifest",
        description="Classical face anti-spoofing baselines, evaluated exactly as "
        "`vitfas eval` evaluates a network.",
    )
    sub = p.add_subparsers(dest="baseline", metavar="METHOD", required=True)
    q = sub.add_parser(
        "lbp",
        help="uniform LBP histograms (gray or YCbCr+HSV colour texture) + RBF SVM",
        description="Train on MANIFEST's train split, choose the threshold on dev, apply it "
        "unchanged to test; write the eval report (metrics.json, report.md, scores.csv, "
        "figures) and the model bundle into OUT.",
    )
    q.add_argument("manifest", help="manifest CSV with train, dev (and test) rows of face crops")
    q.add_argument("-o", "--output", required=True, help="output folder (report + bundle)")
    q.add_argument("--features", choices=FEATURES, default="gray",
                   help="gray: one luma plane; color: Y, Cb, Cr, H, S, V planes (default gray)")
    q.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"crops are resized to SIZE x SIZE first (default {DEFAULT_SIZE})")
    q.add_argument("--points", type=int, default=8, help="LBP neighbours P (default 8)")
    q.add_argument("--radii", type=_radii, default=(1.0,),
                   help="LBP radius, or several comma-separated for multi-scale (default 1)")
    q.add_argument("--method", choices=METHODS, default="nri_uniform",
                   help="nri_uniform: P(P-1)+3 bins, the LBP u2 histogram (default); "
                   "uniform: P+2 rotation-invariant bins")
    q.add_argument("--cells", type=int, default=1,
                   help="cut the crop into CELLS x CELLS cells, one histogram each, so the "
                   "descriptor keeps where a texture is (default 1: one global histogram)")
    q.add_argument("--seed", type=int, default=0, help="seeds the CV folds and the SVM")
    q.add_argument("--grid-samples", type=int, default=GRID_SAMPLES,
                   help="most training images the C/gamma grid search uses, a stratified "
                   f"subsample (default {GRID_SAMPLES}; 0 = all); the final SVM uses all")
    q.add_argument("--train-split", default="train")
    q.add_argument("--dev-split", default="dev", help="split the threshold is chosen on")
    q.add_argument("--test-split", default="test")
    q.add_argument("--criterion", default="eer",
                   help="threshold rule on dev: eer | apcer=0.05 | bpcer=0.05 | eer-edge "
                   "(pre-midpoint rule) (default eer)")
    q.add_argument("--attack-fta", choices=("reject", "accept"), default="reject")
    q.add_argument("--detector", default=None,
                   help="face detector recorded for `vitfas predict` on raw photos (default: "
                   "the manifest's prepare.json, else none = whole image)")
    q.add_argument("--crop-scale", type=float, default=None,
                   help="crop scale recorded with the detector (default: prepare.json's, "
                   "else 1.0)")
    q.add_argument("--json", action="store_true", help="print the metrics as JSON")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vitfas baseline lbp``."""
    from vitfas.baselines.lbp import LBPConfig
    from vitfas.baselines.run import run_lbp_baseline
    from vitfas.metrics.core import parse_criterion
    from vitfas.metrics.evaluation import format_summary

    parse_criterion(args.criterion)
    cfg = LBPConfig(args.features, args.size, args.points, args.radii, args.method, args.cells)
    payload = run_lbp_baseline(
        args.manifest, args.output, lbp=cfg, seed=args.seed, train_split=args.train_split,
        dev_split=args.dev_split, test_split=args.test_split, criterion=args.criterion,
        attack_fta=args.attack_fta, detector=args.detector, crop_scale=args.crop_scale,
        grid_samples=args.grid_samples or None, progress=not getattr(args, "quiet", False),
    )
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    b = payload["baseline"]
    print(format_summary(payload))
    print(f"classifier: C={b['C']:g} gamma={b['gamma']:.4g} (CV AUC {b['cv_auc']:.4f}, "
          f"{b['cv_folds']} folds, seed {b['seed']}); {b['train_live']} live + "
          f"{b['train_attack']} attack train images; {b['features']['length']} features; "
          f"{b['seconds']['total']:.1f} s")
    if payload["files"].get("unreadable"):
        print(f"unreadable images listed in {payload['files']['unreadable']}")
    print(f"bundle: {payload['files']['bundle']} (vitfas predict {payload['files']['bundle']} "
          "PHOTO...)")
    return 0
