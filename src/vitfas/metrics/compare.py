"""``vitfas eval --compare DIR [DIR ...]``: several evaluations side by side in Markdown.

Each argument is a folder holding a ``metrics.json`` written by ``vitfas eval``,
``vitfas eval --scores`` or ``vitfas baseline`` (or the ``metrics.json`` file itself). The
table has one row per split and run (splits in the order they first appear, runs in the
order given) with the figures at each run's own operating threshold (chosen on dev and
applied unchanged to test) and the threshold-free ones:

``| split | run | model | threshold | HTER | APCER (max) | BPCER | AUC | EER |``
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitfas.errors import BadDataError
from vitfas.metrics.report import pct

COLUMNS = ("split", "run", "model", "threshold", "HTER", "APCER (max)", "BPCER", "AUC", "EER")


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A ``metrics.json`` (or the folder holding one), parsed."""
    p = Path(path)
    f = p / "metrics.json" if p.is_dir() else p
    if not f.is_file():
        raise BadDataError(f"{p}: no metrics.json (expected a folder written by vitfas eval "
                           "or vitfas baseline)")
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadDataError(f"{f}: cannot read metrics ({exc})") from exc
    if not isinstance(data, dict) or "frame" not in data:
        raise BadDataError(f"{f}: not a vitfas metrics.json (no 'frame' level); found keys "
                           f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def compare_rows(paths: Sequence[str | Path], level: str = "frame") -> list[dict[str, Any]]:
    """One dict per (split, run): the table's values as numbers (``None`` = undefined or
    the run has no such level/split)."""
    if not paths:
        raise BadDataError("--compare needs at least one result folder")
    runs = [(str(p), read_metrics(p)) for p in paths]
    splits: list[str] = []
    for _, m in runs:
        for name in (m.get(level) or {}).get("splits", {}):
            if name not in splits:
                splits.append(name)
    if not splits:
        raise BadDataError(f"none of {[str(p) for p in paths]} has {level}-level metrics")
    out = []
    for split in splits:
        for run, m in runs:
            res = m.get(level) or {}
            sm = res.get("splits", {}).get(split)
            thr = res.get("threshold") or {}
            row: dict[str, Any] = {"split": split, "run": run,
                                   "model": (m.get("meta") or {}).get("model_id"),
                                   "threshold": thr.get("value"),
                                   "threshold_criterion": thr.get("criterion"),
                                   "threshold_split": thr.get("split")}
            if sm is None:
                row.update(hter=None, apcer_max=None, apcer_max_type=None, bpcer=None,
                           auc=None, eer=None)
            else:
                at = sm["at_threshold"]
                row.update(hter=at["hter"], apcer_max=at["apcer_max"],
                           apcer_max_type=at["apcer_max_type"], bpcer=at["bpcer"],
                           auc=sm["auc"], eer=sm["eer"])
            out.append(row)
    return out


def compare_markdown(rows: Sequence[dict[str, Any]], level: str = "frame") -> str:
    """The Markdown table of :func:`compare_rows`' rows, with a line saying what it shows."""
    lines = [
        f"{level.capitalize()} level. HTER, APCER (worst attack type) and BPCER at each run's "
        "operating threshold (chosen on dev unless stated, applied unchanged to every split); "
        "AUC and EER need no threshold. n/a = undefined or not in that run.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        if r["threshold"] is None:
            thr = "n/a"
        else:
            src = f", {r['threshold_split']}" if r.get("threshold_split") else ""
            thr = f"{r['threshold']:.4g} ({r['threshold_criterion']}{src})"
        apcer = pct(r["apcer_max"])
        if r["apcer_max"] is not None and r.get("apcer_max_type"):
            apcer += f" ({r['apcer_max_type']})"
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.4f}"
        cells = [r["split"], r["run"], str(r["model"] or ""), thr, pct(r["hter"]), apcer,
                 pct(r["bpcer"]), auc, pct(r["eer"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
