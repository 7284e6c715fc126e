"""Train and evaluate each method on the real-photo protocols; print the Markdown table.

    python benchmarks/real_fas/table.py --out /work/real_fas [--methods vit,lbp-gray,lbp-color]

Every method runs through the CLI as a user runs it, on ``OUT/<protocol>/manifest.csv``
(built by ``run.py``):

- ``vit``: the ``vitfas demo`` network and training recipe (``vitfas.demo.run.
  train_config``: ViT patch 8, width 96, depth 4, serial adapters, 64 px, from scratch, 30
  epochs, best dev EER epoch kept) written as a YAML config and trained by ``vitfas train``,
  then ``vitfas eval BUNDLE MANIFEST`` at the bundle's dev threshold;
- ``lbp-gray`` / ``lbp-color``: ``vitfas baseline lbp MANIFEST -o DIR --features gray|color``
  (skipped with a note when this vitfas has no ``baseline`` verb).

Each method writes ``OUT/runs/<protocol>/<method>/`` with the same ``metrics.json`` as
``vitfas eval``; a finished run is reused (delete its folder to redo it). Columns: test
HTER at the threshold chosen on dev (applied unchanged), test AUC, test EER, the dev
threshold, and wall time.
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

PROTOCOLS = ("intra", "cross-camera", "cross-dataset")
METHODS = ("vit", "lbp-gray", "lbp-color")


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


def row_of(metrics: Path) -> dict[str, float]:
    """Test HTER at the dev threshold, AUC, EER and the threshold from ``metrics.json``."""
    m = json.loads(metrics.read_text())["frame"]
    t = m["splits"]["test"]
    return {"hter": t["at_threshold"]["hter"], "auc": t["auc"], "eer": t["eer"],
            "threshold": m["threshold"]["value"],
            "dev_eer": m["splits"].get("dev", {}).get("eer", float("nan"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the folder run.py built")
    ap.add_argument("--runs", type=Path, help="run folders (default OUT/runs)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--epochs", type=int, default=30, help="ViT epochs (demo: 30)")
    ap.add_argument("--seed", type=int, default=0)
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
        notes.append("LBP rows skipped: this vitfas has no `baseline` verb "
                     "(`vitfas baseline lbp`, issue 13 section 2).")
        methods = [m for m in methods if not m.startswith("lbp")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for proto in [p for p in args.protocols.split(",") if p]:
        manifest = args.out / proto / "manifest.csv"
        if not manifest.is_file():
            raise SystemExit(f"{manifest}: not found; build it with benchmarks/real_fas/run.py")
        for method in methods:
            t0 = time.time()
            run = runs / proto / method
            if method == "vit":
                metrics = run_vit(manifest, run, args.epochs, args.seed, args.threads)
            else:
                metrics = run_lbp(manifest, run, method.split("-")[1])
            results.setdefault(proto, {})[method] = {**row_of(metrics),
                                                     "wall_s": time.time() - t0}
            print(f"{proto} {method}: {results[proto][method]}", file=sys.stderr, flush=True)
    lines = ["| protocol | method | test HTER at dev threshold | test AUC | test EER | "
             "dev threshold | dev EER |", "|---|---|---:|---:|---:|---:|---:|"]
    for proto, per in results.items():
        for method, r in per.items():
            lines.append(f"| {proto} | {method} | {100 * r['hter']:.1f}% | {r['auc']:.3f} | "
                         f"{100 * r['eer']:.1f}% | {r['threshold']:.4g} | "
                         f"{100 * r['dev_eer']:.1f}% |")
    table = "\n".join(lines + [""] + [f"Note: {n}" for n in notes])
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "table.md").write_text(table + "\n")
    (runs / "table.json").write_text(json.dumps({"results": results, "notes": notes},
                                                indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
