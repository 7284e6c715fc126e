"""An RBF support vector machine on texture descriptors, giving P(live).

The classifier is scikit-learn's
``CalibratedClassifierCV(Pipeline([StandardScaler, SVC(kernel="rbf")]), method="sigmoid",
ensemble=False)``: features are standardised (mean 0, variance 1 per dimension, fitted on
the training set), the SVM's decision value is mapped to P(live) by a sigmoid (Platt
scaling) fitted on out-of-fold decision values of the training set, and the SVM itself is
refitted on the whole training set. ``C`` and ``gamma`` are picked first by a small
stratified k-fold grid search on the training set (at most :data:`GRID_SAMPLES` rows of
it, a stratified subsample; ROC AUC of the decision value; among
tied points the one nearest ``C = 1``, ``gamma = 1 / n_features`` in log scale). Classes
are weighted inversely to their frequency (``class_weight="balanced"``), and every fold
split is drawn from ``seed``, so a run is reproducible.

Labels: 1 = live (bona fide), 0 = attack; the score is P(live), higher = more live.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitfas.errors import BadDataError

log = logging.getLogger(__name__)

C_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
# gamma as a multiple of 1 / n_features (scikit-learn's "scale" on standardised features)
GAMMA_FACTORS: tuple[float, ...] = (0.1, 1.0, 10.0)
MAX_FOLDS = 5
# the grid search runs on a stratified subsample of at most this many training images (an
# RBF SVM's fit time grows with the square of the sample count); the final fit uses all
GRID_SAMPLES = 2000


@dataclass
class SVMFit:
    """A trained classifier and how it was chosen.

    Attributes:
        model: the fitted ``CalibratedClassifierCV``; ``model.classes_`` is ``[0, 1]``.
        params: ``{"C", "gamma"}`` chosen by the grid search.
        info: JSON-ready record (grid, folds, CV AUC per point, seed, class counts).
    """

    model: Any
    params: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


def _make_svm(c: float, gamma: float, seed: int) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return Pipeline([("scale", StandardScaler()),
                     ("svm", SVC(kernel="rbf", C=c, gamma=gamma, class_weight="balanced",
                                 random_state=seed))])


def train_svm(
    descriptors: np.ndarray,
    y: np.ndarray | Sequence[int],
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
    gamma_factors: Sequence[float] = GAMMA_FACTORS,
    max_folds: int = MAX_FOLDS,
    grid_samples: int | None = GRID_SAMPLES,
) -> SVMFit:
    """Pick ``C``/``gamma`` by stratified k-fold CV, then fit the calibrated SVM on all of X.

    Args:
        descriptors: ``[N, F]`` training descriptors.
        y: ``[N]`` labels, 1 = live, 0 = attack.
        seed: seeds the fold splits and the SVM.
        c_grid: values of ``C`` tried.
        gamma_factors: ``gamma = factor / F`` values tried.
        max_folds: ``k = min(max_folds, smaller class count)``.
        grid_samples: the grid search uses a stratified, seeded subsample of at most this
            many rows (``None``: all); the calibrated final model is fitted on all rows.

    Raises:
        BadDataError: shapes disagree, a label is not 0/1, or a class has fewer than two
            samples (no cross-validation possible).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X = np.asarray(descriptors, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise BadDataError(f"training features {X.shape} and labels {y.shape} do not match; "
                           "expected [N, F] and [N]")
    if not np.isin(y, (0, 1)).all():
        raise BadDataError(f"labels must be 1 (live) or 0 (attack); found {np.unique(y)}")
    n_live, n_att = int((y == 1).sum()), int((y == 0).sum())
    k = min(max_folds, n_live, n_att)
    if k < 2:
        raise BadDataError(
            f"the train split has {n_live} live and {n_att} attack images; the SVM's "
            "cross-validation needs at least 2 of each"
        )
    n_feat = X.shape[1]
    gammas = [float(f) / n_feat for f in gamma_factors]
    grid = {"svm__C": [float(c) for c in c_grid], "svm__gamma": gammas}
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    search = GridSearchCV(_make_svm(1.0, gammas[0], seed), grid, scoring="roc_auc", cv=folds,
                          refit=False, n_jobs=1)
    Xg, yg = X, y
    if grid_samples is not None and X.shape[0] > grid_samples:
        from sklearn.model_selection import train_test_split

        Xg, _, yg, _ = train_test_split(X, y, train_size=int(grid_samples), stratify=y,
                                        random_state=seed)
    search.fit(Xg, yg)
    res = search.cv_results_
    aucs = np.asarray(res["mean_test_score"], dtype=np.float64)
    top = float(np.nanmax(aucs))
    # ties (common when the classes separate) go to the point nearest scikit-learn's
    # defaults, C = 1 and gamma = 1 / n_features
    tied = [j for j in range(len(aucs)) if aucs[j] >= top - 1e-12]
    best = res["params"][min(tied, key=lambda j: (
        abs(np.log10(res["params"][j]["svm__C"])),
        abs(np.log10(res["params"][j]["svm__gamma"] * n_feat)), j))]
    C, gamma = float(best["svm__C"]), float(best["svm__gamma"])
    log.info("SVM grid search: C=%g gamma=%g (CV AUC %.4f, %d folds)", C, gamma, top, k)
    model = CalibratedClassifierCV(
        _make_svm(C, gamma, seed), method="sigmoid", ensemble=False,
        cv=StratifiedKFold(n_splits=k, shuffle=True, random_state=seed),
    )
    model.fit(X, y)
    info = {
        "classifier": "CalibratedClassifierCV(StandardScaler + SVC rbf, sigmoid, "
                      "ensemble=False)",
        "class_weight": "balanced",
        "C": C,
        "gamma": gamma,
        "grid": {"C": list(grid["svm__C"]), "gamma_factor_over_n_features":
                 [float(f) for f in gamma_factors]},
        "cv_folds": k,
        "grid_search_rows": int(Xg.shape[0]),
        "cv_auc": top,
        "cv_table": [{"C": float(p["svm__C"]), "gamma": float(p["svm__gamma"]),
                      "auc": float(m)}
                     for p, m in zip(res["params"], res["mean_test_score"])],
        "seed": seed,
        "train_live": n_live,
        "train_attack": n_att,
        "n_features": n_feat,
    }
    return SVMFit(model, {"C": C, "gamma": gamma}, info)


def live_probability(model: Any, descriptors: np.ndarray) -> np.ndarray:
    """``[N, F]`` descriptors -> ``[N]`` P(live) from a model trained with label 1 = live."""
    X = np.asarray(descriptors, dtype=np.float64)
    if X.shape[0] == 0:
        return np.zeros(0)
    classes = list(getattr(model, "classes_", []))
    if 1 not in classes:
        raise BadDataError(f"classifier classes {classes} have no live class (1)")
    return model.predict_proba(X)[:, classes.index(1)].astype(np.float64)
