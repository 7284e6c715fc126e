"""``vitfas train CONFIG.yaml [key.sub=value ...] [--resume [CHECKPOINT]]``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``train`` verb."""
    p = subparsers.add_parser(
        "train",
        help="train a ViT classifier (FAS live/spoof or ImageFolder) into a model bundle",
        description=(
            "Train from a YAML config; any key can be overridden as key.sub=value "
            "(e.g. optim.lr=3e-4 trainer.epochs=5 model.trainable=adapters). Writes the run "
            "folder out= (config.yaml, checkpoints, CSV and TensorBoard logs) and its bundle/ "
            "subfolder. Relative paths in the config and the overrides (out, data.path, "
            "model.pretrained) are taken from the current folder, not the config's."
        ),
    )
    p.add_argument("config", help="YAML configuration file (a relative path is taken from "
                   "the current folder), or the name of a shipped config (vitfas config list)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue the run in `out` (from out/last.pt, or from CHECKPOINT)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an out folder that holds an earlier run (its "
                   "checkpoints, logs and bundle are deleted)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def run(args: argparse.Namespace) -> int:
    from vitfas.train.config import load_config
    from vitfas.train.run import TrainConfig, run_training
    from vitfas.train.scoring import describe_margin

    cfg = load_config(TrainConfig, args.config, args.overrides)
    summary = run_training(cfg, resume=args.resume, quiet=args.quiet,
                           overwrite=args.overwrite)
    from vitfas.distributed import get_rank

    if get_rank() != 0:  # under torchrun rank 0 alone reports
        return 0
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    share = 100.0 * summary["trainable_share"]
    print(f"run folder     {summary['run_dir']}")
    print(f"trainable      {summary['trainable_params']:,} of {summary['total_params']:,} "
          f"parameters ({share:.2f}%)")
    state = "finished" if summary["finished"] else "stopped early (trainer.max_steps)"
    print(f"steps          {summary['steps']} ({summary['epochs_done']} epochs, {state})")
    if summary.get("best_metric"):
        print(f"best           {summary['best_metric']}={_fmt(summary['best_value'])} "
              f"at epoch {summary['best_epoch']}")
    thr = summary.get("threshold")
    if thr:
        print(f"threshold      {thr['value']:.6g} ({thr['criterion']})")
        if thr.get("margin"):
            print(f"dev margin     {describe_margin(thr['margin'])}")
    cal = summary.get("calibration") or {}
    if cal.get("method") == "temperature":
        print(f"temperature    {cal['temperature']:.4g} (fitted on {cal.get('split')}: NLL "
              f"{cal['nll_before']:.4g} -> {cal['nll_after']:.4g})")
    for split, m in (summary.get("metrics") or {}).items():
        keys = [k for k in ("apcer", "bpcer", "acer", "eer", "auc", "ece", "acc", "loss")
                if k in m]
        print(f"{split:<14} " + "  ".join(f"{k}={_fmt(m[k])}" for k in keys))
    if summary.get("bundle"):
        print(f"bundle         {summary['bundle']}")
    return 0
