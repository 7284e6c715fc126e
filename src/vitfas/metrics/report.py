"""Evaluation reports: ``metrics.json``, ``report.md`` and PNG figures (matplotlib, Agg).

For every level (``frame``, ``video``) the report holds:

* ``{level}_roc.png``: ROC (pooled APCER = FPR vs 1 - BPCER) per split, operating point marked.
* ``{level}_det.png``: DET curves, APCER vs BPCER on normal-deviate (probit) axes, pooled
  attacks (solid) and each attack type (dotted) per split, operating point marked.
* ``{level}_hist_{split}.png``: score histograms of bona fide and each attack type, with
  the threshold.
* ``{level}_confusion_{split}.png``: the confusion table at the threshold (also in Markdown).
* ``{level}_reliability.png``: the reliability diagram of P(live) per split (mean score vs
  live rate in equal-width bins, the diagonal is perfect calibration), with each split's
  expected calibration error (ECE; also in Markdown). Left out when no split's scores are
  probabilities.

All figures are ``FIG_SIZE`` inches at ``DPI`` (600 x 450 px), saved without cropping so the
size is fixed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from vitfas.metrics.core import OCIM_LABEL, Scores, curve, describe_margin

log = logging.getLogger(__name__)

FIG_SIZE = (6.0, 4.5)
DPI = 100
DET_TICKS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
_DET_CLIP = 5e-4

Level = tuple[Mapping[str, Any], Mapping[str, Scores]]  # (evaluate() result, splits)


def pct(x: float | None, digits: int = 2) -> str:
    """``0.1234 -> "12.34%"``; ``None`` (undefined) -> ``"n/a"``."""
    return "n/a" if x is None else f"{100.0 * x:.{digits}f}%"


def _probit(p: np.ndarray) -> np.ndarray:
    nd = NormalDist()
    q = np.clip(np.asarray(p, dtype=np.float64), _DET_CLIP, 1 - _DET_CLIP)
    return np.array([nd.inv_cdf(float(v)) for v in q.ravel()]).reshape(q.shape)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIG_SIZE, dpi=DPI)
    return plt, fig, ax


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_roc(splits: Mapping[str, Scores], result: Mapping[str, Any], path: Path,
             attack_fta: str = "reject") -> Path:
    """ROC curves (FPR = pooled APCER on x, TPR = 1 - BPCER on y), one per split."""
    plt, fig, ax = _figure()
    for name, s in splits.items():
        c = curve(s, attack_fta)  # type: ignore[arg-type]
        summ = result["splits"][name]
        x = np.concatenate(([1.0], c.fpr))  # (1, 1): accept everything, FTAs included
        y = np.concatenate(([1.0], c.tpr))
        ax.plot(x, y, label=f"{name} (AUC {summ['auc']:.4f})")
        at = summ["at_threshold"]
        ax.plot([at["apcer_pooled"]], [1 - at["bpcer"]], "o", color=ax.lines[-1].get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
    ax.set_xlabel("FPR (pooled APCER)")
    ax.set_ylabel("TPR (1 - BPCER)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("ROC (dot: operating threshold)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_det(splits: Mapping[str, Scores], result: Mapping[str, Any], path: Path,
             attack_fta: str = "reject") -> Path:
    """DET curves: APCER (x) vs BPCER (y), both on normal-deviate axes."""
    plt, fig, ax = _figure()
    for name, s in splits.items():
        c = curve(s, attack_fta)  # type: ignore[arg-type]
        (line,) = ax.plot(_probit(c.apcer_pooled), _probit(c.bpcer),
                          label=f"{name}: all attacks (EER {pct(result['splits'][name]['eer'])})")
        for sp, a in c.apcer.items():
            if not np.isnan(a).all():
                ax.plot(_probit(a), _probit(c.bpcer), ":", color=line.get_color(), alpha=0.8,
                        label=f"{name}: {sp}")
        at = result["splits"][name]["at_threshold"]
        ax.plot(_probit(np.array([at["apcer_pooled"]])), _probit(np.array([at["bpcer"]])), "o",
                color=line.get_color())
    ticks = _probit(np.array(DET_TICKS))
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    lim = _probit(np.array([_DET_CLIP, 1 - _DET_CLIP]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.plot(lim, lim, ":", color="grey", linewidth=0.8)
    ax.set_xlabel("APCER (%)")
    ax.set_ylabel("BPCER (%)")
    ax.set_title("DET (normal-deviate axes; dot: operating threshold)")
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_histogram(s: Scores, threshold: float, path: Path, title: str) -> Path:
    """Score histograms of bona fide and each attack type (acquired presentations only)."""
    plt, fig, ax = _figure()
    ok = ~s.fta
    lo = float(np.nanmin(s.scores)) if ok.any() else 0.0
    hi = float(np.nanmax(s.scores)) if ok.any() else 1.0
    lo, hi = min(lo, 0.0, threshold), max(hi, 1.0, threshold)
    bins = np.linspace(lo, hi, 31)
    groups = [("bona fide", s.is_live)] + [(sp, s.attack_type == sp) for sp in s.species]
    for name, m in groups:
        v = s.scores[m & ok]
        n_fta = int((m & s.fta).sum())
        if v.size == 0 and n_fta == 0:
            continue
        ax.hist(v, bins=bins, alpha=0.5, label=f"{name} (n={int(m.sum())}, FTA={n_fta})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("score = P(live)")
    ax.set_ylabel("presentations")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_reliability(result: Mapping[str, Any], path: Path, title: str) -> Path:
    """Reliability diagram: per split, each non-empty bin's mean P(live) (x) against its live
    rate (y), marker area by bin size; the diagonal is perfect calibration. Reads the
    ``calibration`` block of every split in ``result`` (:func:`vitfas.metrics.summarize`)."""
    plt, fig, ax = _figure()
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8, label="perfectly calibrated")
    for name, sm in result["splits"].items():
        cal = sm.get("calibration") or {}
        bins = [b for b in cal.get("reliability") or [] if b["n"] > 0]
        if not bins:
            continue
        x = [b["mean_score"] for b in bins]
        y = [b["live_rate"] for b in bins]
        size = 20 + 180 * np.sqrt(np.array([b["n"] for b in bins]) / max(cal["n"], 1))
        (line,) = ax.plot(x, y, "-", label=f"{name} (ECE {cal['ece']:.4f}, {cal['bins']} bins)")
        ax.scatter(x, y, s=size, color=line.get_color(), alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean P(live) in the bin")
    ax.set_ylabel("share of bona fide in the bin")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _calibration_rows(result: Mapping[str, Any]) -> list[str]:
    lines = ["| split | ECE | bins | scored presentations |", "|---|---|---|---|"]
    for name, sm in result["splits"].items():
        cal = sm.get("calibration") or {}
        ece = "n/a (scores not in [0, 1])" if cal.get("ece") is None else f"{cal['ece']:.4f}"
        lines.append(f"| {name} | {ece} | {cal.get('bins')} | {cal.get('n')} |")
    return lines


def plot_confusion(at: Mapping[str, Any], path: Path, title: str) -> Path:
    """The confusion table (true class x decision) as a coloured grid."""
    plt, fig, ax = _figure()
    rows = list(at["confusion"])
    cols = ["accepted", "rejected", "fta"]
    data = np.array([[at["confusion"][r][c] for c in cols] for r in rows], dtype=float)
    share = data / np.maximum(data.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{int(data[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(cols)), ["accepted as live", "rejected", "FTA"])
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    return _save(plt, fig, path)


def _summary_rows(result: Mapping[str, Any]) -> list[str]:
    head = ("| split | bona fide | attacks | FTA (bf/att) | APCER max | BPCER | ACER | HTER | "
            "EER | AUC | TPR@FPR=1% | BPCER20 | BPCER100 |")
    lines = [head, "|" + "---|" * 13]
    for name, sm in result["splits"].items():
        at, c = sm["at_threshold"], sm["counts"]
        worst = f" ({at['apcer_max_type']})" if at["apcer_max_type"] else ""
        lines.append(
            f"| {name} | {c['bona_fide']} | {c['attack']} | {c['fta_bona_fide']}/"
            f"{c['fta_attack']} | {pct(at['apcer_max'])}{worst} | {pct(at['bpcer'])} | "
            f"{pct(at['acer'])} | {pct(at['hter'])} | {pct(sm['eer'])} | {sm['auc']:.4f} | "
            f"{pct(sm['tpr_at_fpr']['value'])} | {pct(sm['bpcer20']['value'])} | "
            f"{pct(sm['bpcer100']['value'])} |"
        )
    return lines


def _apcer_rows(result: Mapping[str, Any]) -> list[str]:
    types = sorted({t for sm in result["splits"].values() for t in sm["at_threshold"]["apcer"]})
    lines = ["| split | " + " | ".join(f"APCER {t}" for t in types) +
             " | APCER mean | ACER (mean APCER) |",
             "|" + "---|" * (len(types) + 3)]
    for name, sm in result["splits"].items():
        at = sm["at_threshold"]
        cells = [pct(at["apcer"].get(t)) for t in types]
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {pct(at['apcer_mean'])} | {pct(at['acer_mean_apcer'])} |")
    return lines


def _confusion_rows(at: Mapping[str, Any]) -> list[str]:
    lines = ["| true class | n | accepted as live | rejected | FTA |", "|---|---|---|---|---|"]
    for cls, c in at["confusion"].items():
        lines.append(f"| {cls} | {c['n']} | {c['accepted']} | {c['rejected']} | {c['fta']} |")
    return lines


def write_report(
    out_dir: str | Path,
    levels: Mapping[str, Level],
    *,
    title: str = "vitfas evaluation",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and the PNG figures into ``out_dir``.

    Args:
        out_dir: report folder (created).
        levels: ``{"frame": (evaluate_result, {"dev": Scores, "test": Scores}), "video": ...}``
            where ``evaluate_result`` is :func:`vitfas.metrics.evaluate`'s dict for those
            splits.
        meta: extra facts for the header and the JSON (model id, manifest, ...).

    Returns:
        ``{name: path}`` of every file written (``"json"``, ``"markdown"``, ``"{level}_roc"``,
        ``"{level}_det"``, ``"{level}_hist_{split}"``, ``"{level}_confusion_{split}"``,
        ``"{level}_reliability"`` when some split's scores are probabilities).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    payload = {"meta": dict(meta or {}), **{lvl: res for lvl, (res, _) in levels.items()}}
    files["json"] = out / "metrics.json"
    files["json"].write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")

    md = [f"# {title}", ""]
    for k, v in (meta or {}).items():
        md.append(f"- {k}: {v}")
    md += ["", "Conventions: bona fide is positive, score = P(live), accepted as live when "
           "score >= threshold. ACER = (max APCER + BPCER)/2, HTER = (pooled APCER + BPCER)/2. "
           "Failures to acquire (FTA) stay in every denominator. `n/a` = undefined (no "
           "presentations of that kind). Definitions: docs/metrics.md.", ""]
    for lvl, (res, splits) in levels.items():
        thr = res["threshold"]
        fta_rule = "accepted" if res.get("attack_fta") == "accept" else "rejected"
        md += [
            f"## {lvl.capitalize()} level",
            "",
            f"Operating threshold **{thr['value']:.6g}** ({thr['criterion']}"
            + (f", chosen on `{thr['split']}`" if thr.get("split") else "")
            + f"), applied unchanged to every split. Attack FTAs counted as {fta_rule}."
            + (f" Dev margin (width of the interval of thresholds reaching the "
               f"{thr.get('split') or 'dev'} EER): {describe_margin(thr['margin'])}."
               if thr.get("margin") else ""),
            "",
            *_summary_rows(res),
            "",
            "APCER per attack type at the operating threshold:",
            "",
            *_apcer_rows(res),
            "",
            f"HTER at each split's own EER threshold, {OCIM_LABEL} (threshold chosen on the "
            "evaluated split itself, so optimistic):",
            "",
            "| split | threshold | HTER |",
            "|---|---|---|",
        ]
        for name, sm in res["splits"].items():
            o = sm["hter_at_own_eer_threshold"]
            md.append(f"| {name} | {o['threshold']:.6g} | {pct(o['value'])} |")
        md.append("")
        files[f"{lvl}_roc"] = plot_roc(splits, res, out / f"{lvl}_roc.png", res.get("attack_fta",
                                                                                    "reject"))
        files[f"{lvl}_det"] = plot_det(splits, res, out / f"{lvl}_det.png", res.get("attack_fta",
                                                                                    "reject"))
        md += [f"![{lvl} ROC]({lvl}_roc.png) ![{lvl} DET]({lvl}_det.png)", ""]
        md += ["Calibration of P(live): expected calibration error over equal-width bins, "
               "ECE = sum over bins of (n_bin / n) |share of bona fide - mean score| "
               "(docs/metrics.md):", "", *_calibration_rows(res), ""]
        if any((sm.get("calibration") or {}).get("ece") is not None
               for sm in res["splits"].values()):
            key = f"{lvl}_reliability"
            files[key] = plot_reliability(res, out / f"{key}.png",
                                          f"{lvl} reliability diagram (P(live))")
            md += [f"![{lvl} reliability diagram]({key}.png)", ""]
        for name, s in splits.items():
            at = res["splits"][name]["at_threshold"]
            key = f"{lvl}_hist_{name}"
            files[key] = plot_histogram(s, thr["value"], out / f"{key}.png",
                                        f"{lvl} scores, {name}")
            ckey = f"{lvl}_confusion_{name}"
            files[ckey] = plot_confusion(at, out / f"{ckey}.png", f"{lvl} confusion, {name}")
            md += [f"### {name}: confusion at threshold {thr['value']:.6g}", "",
                   *_confusion_rows(at), "",
                   f"![{name} histogram]({key}.png) ![{name} confusion]({ckey}.png)", ""]
    files["markdown"] = out / "report.md"
    files["markdown"].write_text("\n".join(md))
    log.info("report written to %s (%d files)", out, len(files))
    return files
