"""Train and evaluate each method on the real-photo protocols; print the Markdown table.

    python benchmarks/real_fas/table.py --out /work/real_fas [--methods vit,lbp-gray,lbp-color]
        [--protocols intra,cross-camera,cross-dataset] [--report-only]

Every method runs through the CLI as a user runs it, on ``OUT/<protocol>/manifest.csv``
(built by ``run.py``):

- ``vit``: the ``vitfas demo`` network and training recipe (``vitfas.demo.run.
  train_config``: ViT patch 8, width 96, depth 4, serial adapters, 64 px, from scratch, 30
  epochs, best dev EER epoch kept) written as a YAML config and trained by ``vitfas train``,
  then ``vitfas eval BUNDLE MANIFEST`` at the bundle's dev threshold;
- ``lbp-gray`` / ``lbp-color``: ``vitfas baseline lbp MANIFEST -o DIR --features gray|color``
  (skipped with a note when this vitfas has no ``baseline`` verb).

Each method writes ``OUT/runs/<protocol>/<method>/`` with the same ``metrics.json`` and
``scores.csv`` as ``vitfas eval``; a finished run is reused (delete its folder to redo it).
Runs that are not finished are trained and evaluated, unless ``--report-only``: then they
are reported as "not run".

Each run's ``scores.csv`` is then evaluated twice, as ``vitfas eval --scores SCORES
MANIFEST --criterion C`` does, with the two dev-threshold rules (same scores, no
retraining): ``eer-edge``, the pre-midpoint rule (the threshold at the edge of the interval of
thresholds reaching the dev EER) and ``eer``, the current rule (the interval's midpoint in
logit space). Columns: test HTER at the dev threshold (applied unchanged) before -> after,
the two thresholds, test AUC, test EER, dev EER, the dev margin, and the test HTER at the
test set's own EER threshold (test-tuned, labelled "comparable-to-papers").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))

from vitfas.demo.run import DemoModel, train_config  # noqa: E402
from vitfas.metrics.evaluation import run_eval_scores  # noqa: E402

PROTOCOLS = ("intra", "cross-camera", "cross-dataset")
METHODS = ("vit", "lbp-gray", "lbp-color")
LABELS = {"vit": "vitfas ViT, demo recipe (30 epochs)", "lbp-gray": "LBP gray + RBF SVM",
          "lbp-color": "LBP colour (YCbCr+HSV) + RBF SVM"}
RULES = ("eer-edge", "eer")  # before (pre-midpoint rule), after


def vitfas(*args: str, log: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vitfas ARGS`` with this checkout's sources first; output to ``log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.run([sys.executable, "-m", "vitfas", *args], stdout=fh,
                              stderr=subprocess.STDOUT, text=True, env=env)


def has_verb(verb: str) -> bool:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "vitfas", verb, "--help"], capture_output=True,
                       text=True, env=env)
    return r.returncode == 0


def run_vit(manifest: Path, run: Path, epochs: int, seed: int, threads: int) -> Path:
    """Train the demo ViT on ``manifest`` and evaluate it; returns ``metrics.json``."""
    metrics = run / "eval" / "metrics.json"
    if metrics.is_file():
        return metrics
    bundle = run / "train" / "bundle"
    if not (bundle / "config.json").is_file() and not any(bundle.glob("*.safetensors")):
        cfg = train_config(manifest.resolve(), (run / "train").resolve(), size=64,
                           epochs=epochs, seed=seed, model=DemoModel(), threads=threads,
                           batch_size=32)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        r = vitfas("train", str(run / "config.yaml"), log=run / "train.log")
        if r.returncode != 0:
            raise SystemExit(f"vitfas train failed on {manifest}: see {run / 'train.log'}")
    r = vitfas("eval", str(bundle), str(manifest), "-o", str(run / "eval"), log=run / "eval.log")
    if r.returncode != 0:
        raise SystemExit(f"vitfas eval failed on {manifest}: see {run / 'eval.log'}")
    return metrics


def run_lbp(manifest: Path, run: Path, features: str) -> Path:
    """``vitfas baseline lbp`` on ``manifest``; returns its ``metrics.json``."""
    metrics = run / "metrics.json"
    if not metrics.is_file():
        r = vitfas("baseline", "lbp", str(manifest), "-o", str(run), "--features", features,
                   log=run.parent / f"{run.name}.log")
        if r.returncode != 0:
            raise SystemExit(f"vitfas baseline lbp failed on {manifest}: see "
                             f"{run.parent / f'{run.name}.log'}")
    return metrics


def scores_of(run: Path, method: str) -> Path:
    """The ``scores.csv`` a finished run wrote (``vit``: ``RUN/eval/``; LBP: ``RUN/``)."""
    return run / "eval" / "scores.csv" if method == "vit" else run / "scores.csv"


def both_rules(scores: Path, manifest: Path) -> dict[str, float | str | None]:
    """Evaluate ``scores`` on ``manifest`` at the dev threshold of each rule in ``RULES``.

    Returns test HTER, BPCER, APCER and the threshold per rule (``hter_eer-edge``, ...),
    and the rule-free figures (test AUC, test EER, dev EER, the dev margin in logits, the
    test HTER at the test set's own EER threshold), checked equal under both rules.
    """
    row: dict[str, float | str | None] = {}
    free = {}
    for rule in RULES:
        f = run_eval_scores(scores, manifest, criterion=rule)["frame"]
        t, d = f["splits"]["test"], f["splits"]["dev"]
        at = t["at_threshold"]
        row.update({f"hter_{rule}": at["hter"], f"bpcer_{rule}": at["bpcer"],
                    f"apcer_{rule}": at["apcer_pooled"], f"threshold_{rule}":
                    f["threshold"]["value"], f"criterion_{rule}": f["threshold"]["criterion"]})
        free[rule] = {"auc": t["auc"], "eer": t["eer"], "dev_eer": d["eer"],
                      "dev_margin_logit": d["eer_margin"]["logit"],
                      "hter_test_tuned": t["hter_at_own_eer_threshold"]["value"]}
    if free[RULES[0]] != free[RULES[1]]:
        raise SystemExit(f"{scores}: threshold-free figures differ between rules: {free}")
    row.update(free[RULES[1]])
    return row


def _pct(x: float | str | None) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def markdown(results: dict[str, dict[str, dict]], missing: dict[str, list[str]]) -> str:
    """The README table: one row per protocol and method, "not run" rows for the rest."""
    lines = [
        "| protocol | method | test HTER at dev threshold, before → after | (BPCER / APCER "
        "before → after) | dev threshold P(live), before → after | test AUC | test EER | "
        "dev EER | dev margin (logits) | test HTER at test EER threshold (test-tuned, "
        "comparable-to-papers) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for proto in PROTOCOLS:
        for method in METHODS:
            if method in missing.get(proto, []):
                lines.append(f"| {proto} | {LABELS[method]} | not run | | | | | | | |")
                continue
            r = results.get(proto, {}).get(method)
            if r is None:
                continue
            b, a = RULES
            m = r["dev_margin_logit"]
            lines.append(
                f"| {proto} | {LABELS[method]} | {_pct(r[f'hter_{b}'])} → "
                f"**{_pct(r[f'hter_{a}'])}** | {_pct(r[f'bpcer_{b}'])} / "
                f"{_pct(r[f'apcer_{b}'])} → {_pct(r[f'bpcer_{a}'])} / {_pct(r[f'apcer_{a}'])} | "
                f"{r[f'threshold_{b}']:.4g} → {r[f'threshold_{a}']:.4g} | {r['auc']:.3f} | "
                f"{_pct(r['eer'])} | {_pct(r['dev_eer'])} | "
                f"{'n/a' if m is None else f'{m:.3g}'} | {_pct(r['hter_test_tuned'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the folder run.py built")
    ap.add_argument("--runs", type=Path, help="run folders (default OUT/runs)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--epochs", type=int, default=30, help="ViT epochs (demo: 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: tabulate the finished runs, the others as 'not run'")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for training (the demo uses 1)")
    args = ap.parse_args(argv)
    runs = args.runs or args.out / "runs"
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; expected {', '.join(METHODS)}")
    notes = []
    if any(m.startswith("lbp") for m in methods) and not has_verb("baseline"):
        notes.append("LBP rows skipped: this vitfas has no `baseline` verb.")
        methods = [m for m in methods if not m.startswith("lbp")]
    results: dict[str, dict[str, dict]] = {}
    missing: dict[str, list[str]] = {}
    for proto in [p for p in args.protocols.split(",") if p]:
        manifest = args.out / proto / "manifest.csv"
        if not manifest.is_file():
            raise SystemExit(f"{manifest}: not found; build it with benchmarks/real_fas/run.py")
        for method in methods:
            t0 = time.time()
            run = runs / proto / method
            scores = scores_of(run, method)
            if not scores.is_file():
                if args.report_only:
                    missing.setdefault(proto, []).append(method)
                    print(f"{proto} {method}: not run ({scores} absent)",
                          file=sys.stderr, flush=True)
                    continue
                if method == "vit":
                    run_vit(manifest, run, args.epochs, args.seed, args.threads)
                else:
                    run_lbp(manifest, run, method.split("-")[1])
            results.setdefault(proto, {})[method] = {**both_rules(scores, manifest),
                                                     "wall_s": time.time() - t0}
            print(f"{proto} {method}: {results[proto][method]}", file=sys.stderr, flush=True)
    table = markdown(results, missing) + "\n" + "".join(f"\nNote: {n}" for n in notes)
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "table.md").write_text(table + "\n")
    (runs / "table.json").write_text(json.dumps({"results": results, "not_run": missing,
                                                 "notes": notes}, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
