"""``vitfas baseline lbp``: train the LBP + RBF SVM baseline on a manifest and evaluate it.

Steps: read the manifest's rows; compute the LBP descriptor (:mod:`vitfas.baselines.lbp`)
of every train, dev and test row that is not a failure to acquire; fit the SVM on train
(:mod:`vitfas.baselines.svm`); score dev and test (P(live)); choose the threshold on dev and
apply it unchanged to test through the metrics layer
(:func:`vitfas.metrics.evaluation.evaluate_scored`, the code ``vitfas eval`` runs); write
the report and the bundle into one folder.

FTA rows (``fta`` = 1/true/yes, empty path) are not read; dev/test images that cannot be
read are counted as failures to acquire, as ``vitfas eval`` does. Unreadable train images
are left out of training. Every unreadable image is listed in ``unreadable.csv``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from vitfas.baselines.bundle import CLASS_NAMES, save_lbp_bundle, set_bundle_threshold
from vitfas.baselines.lbp import LBPConfig, lbp_features
from vitfas.baselines.svm import GRID_SAMPLES, live_probability, train_svm
from vitfas.errors import BadDataError, VitfasError
from vitfas.metrics.core import LIVE_LABELS
from vitfas.metrics.evaluation import ScoredManifest, evaluate_scored, row_is_fta

log = logging.getLogger(__name__)


def manifest_features(
    manifest: str | Path, rows_wanted: list[int], cfg: LBPConfig, progress: bool = True
) -> tuple[list[dict[str, str]], np.ndarray, list[int], dict[int, str]]:
    """Descriptors of some rows of a manifest.

    Args:
        manifest: the manifest CSV (image rows are face crops; video rows name a frame).
        rows_wanted: row indices (manifest order) to read.

    Returns:
        ``(rows, X [len(ok), F], ok, errors)``: all manifest rows, descriptors of the rows
        that could be read, their indices, and ``{row index: error}`` for the others.
    """
    from tqdm import tqdm

    from vitfas.data.datasets import ManifestDataset

    ds = ManifestDataset(manifest, class_names=CLASS_NAMES)
    feats: list[np.ndarray] = []
    ok: list[int] = []
    errors: dict[int, str] = {}
    for i in tqdm(rows_wanted, desc="LBP features", unit="img", disable=not progress):
        try:
            feats.append(lbp_features(ds.load(i), cfg))
            ok.append(i)
        except (VitfasError, OSError, ValueError) as exc:
            log.warning("row %d (%s): %s; listed in unreadable.csv", i, ds.rows[i]["path"], exc)
            errors[i] = str(exc)
    X = np.stack(feats) if feats else np.zeros((0, cfg.length))
    return ds.rows, X, ok, errors


def _recipe(manifest: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The crop recipe to record: defaults, ``prepare.json``'s, then explicit overrides."""
    from vitfas.data.prepare import recipe_of_manifest

    pre = {"detector": "none", "crop_scale": 1.0, "frames_per_video": 1,
           **recipe_of_manifest(manifest),
           **{k: v for k, v in overrides.items() if v is not None},
           "colour_order": "RGB"}
    return pre


def run_lbp_baseline(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    lbp: LBPConfig | None = None,
    seed: int = 0,
    train_split: str = "train",
    dev_split: str = "dev",
    test_split: str = "test",
    criterion: str = "eer",
    attack_fta: str = "reject",
    detector: str | None = None,
    crop_scale: float | None = None,
    grid_samples: int | None = GRID_SAMPLES,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, threshold on dev, evaluate on dev and test, save the bundle.

    Args:
        manifest: manifest CSV with ``train`` and ``dev`` rows (and usually ``test``).
        out_dir: the folder written: the eval report (``metrics.json``, ``report.md``,
            PNGs, ``scores.csv``, ``unreadable.csv`` if any) and the bundle
            (``config.json``, ``model.skops``, ``README.md``) that ``vitfas predict`` runs.
        lbp: feature recipe (default: gray, 64 px, P=8, R=1, ``nri_uniform``).
        criterion: threshold rule on dev (``eer``, ``apcer=0.05``, ...), applied unchanged
            to test.
        detector, crop_scale: recorded crop recipe for prediction on raw photos (default:
            the manifest's ``prepare.json``, else the whole image).
        grid_samples: most training rows the C/gamma grid search uses (a stratified
            subsample; ``None``: all); the final model is fitted on every training row.

    Returns:
        The ``metrics.json`` payload plus ``files`` and ``baseline`` (classifier record).
    """
    lbp = lbp or LBPConfig()
    manifest = Path(manifest)
    out = Path(out_dir)
    t0 = time.perf_counter()
    from vitfas.data.manifest import read_manifest

    rows = read_manifest(manifest)
    split_of = [str(r.get("split", "")).strip() for r in rows]
    present = sorted(set(split_of))
    for need in (train_split, dev_split):
        if need not in present:
            raise BadDataError(
                f"{manifest}: the baseline needs a {need!r} split ({train_split!r} to train "
                f"on, {dev_split!r} to choose the threshold on); found splits {present}"
            )
    fta = np.array([row_is_fta(r) for r in rows])
    wanted_splits = {train_split, dev_split, test_split}
    todo = [i for i, sp in enumerate(split_of) if sp in wanted_splits and not fta[i]]
    rows, X, ok, errors = manifest_features(manifest, todo, lbp, progress)
    t_feat = time.perf_counter() - t0

    is_live = np.array([str(r.get("label", "")).strip().lower() in LIVE_LABELS for r in rows])
    ok_arr = np.asarray(ok, dtype=np.int64)
    train_mask = np.array([split_of[i] == train_split for i in ok], dtype=bool)
    X_train, y_train = X[train_mask], is_live[ok_arr[train_mask]].astype(np.int64)
    fit = train_svm(X_train, y_train, seed=seed, grid_samples=grid_samples)
    t_fit = time.perf_counter() - t0 - t_feat

    scores = np.full(len(rows), np.nan)
    eval_mask = ~train_mask
    if eval_mask.any():
        scores[ok_arr[eval_mask]] = live_probability(fit.model, X[eval_mask])
    unreadable = sorted(i for i in errors if split_of[i] != train_split)
    fta_all = fta.copy()
    fta_all[unreadable] = True
    sm = ScoredManifest(rows, scores, fta_all, unreadable, errors)

    preprocessing = _recipe(manifest, {"detector": detector, "crop_scale": crop_scale})
    training = {"manifest": str(manifest), "train_split": train_split, "dev_split": dev_split,
                "test_split": test_split, "train_rows": int(train_mask.sum()),
                "train_unreadable": len(errors) - len(unreadable), "seed": seed,
                "criterion": criterion}
    bundle_cfg = save_lbp_bundle(out, fit.model, lbp, preprocessing=preprocessing,
                                 classifier=fit.info, threshold=None, training=training)
    model_id = f"lbp-svm-{lbp.features}@{bundle_cfg['model_sha256'][:12]}"
    source = {"bundle": str(out), "model_id": model_id,
              "method": f"LBP {lbp.features} ({lbp.points},{list(lbp.radii)},{lbp.method}, "
                        f"{lbp.size}px{f', {lbp.cells}x{lbp.cells} cells' if lbp.cells > 1 else ''}"
                        ") + RBF SVM",
              "svm": f"C={fit.params['C']:g} gamma={fit.params['gamma']:.4g} "
                     f"(CV AUC {fit.info['cv_auc']:.4f}, {fit.info['cv_folds']} folds)",
              "train_rows": int(train_mask.sum())}
    payload = evaluate_scored(sm, manifest, source=source, dev_split=dev_split,
                              test_split=test_split, criterion=criterion,
                              attack_fta=attack_fta, out_dir=out)
    thr = payload["frame"]["threshold"]
    metrics = {k: v for k, v in payload.items() if k != "files"}
    set_bundle_threshold(out, thr, metrics)
    payload["baseline"] = {**fit.info, "features": lbp.to_dict(),
                           "seconds": {"features": round(t_feat, 2), "fit": round(t_fit, 2),
                                       "total": round(time.perf_counter() - t0, 2)}}
    payload.setdefault("files", {})["bundle"] = str(out)
    return payload
