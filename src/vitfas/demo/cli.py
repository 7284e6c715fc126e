"""``vitfas demo [-o runs/demo] [--predict PATH] [--epochs N] [-q] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``demo`` verb."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on built-in data (simulated attacks), in minutes on a CPU",
        description=(
            "Build a small face anti-spoofing set from real photos shipped with "
            "scikit-image (bona fide) and their SIMULATED print/replay recaptures "
            "(attacks), train the fas_scratch recipe (a CDC conv-stem ViT) from scratch, "
            "choose the threshold "
            "on dev, evaluate on test (full report), draw attention rollouts, and predict "
            "held-out images and any --predict paths, and report how the bundle decides the "
            "real photos of the fixture folder when it is present. Needs no network."
        ),
    )
    p.add_argument("-o", "--out", default="runs/demo",
                   help="output folder (default runs/demo; an earlier demo there is replaced)")
    p.add_argument("--predict", action="append", default=[], metavar="PATH",
                   help="also score these images/videos/folders with the trained model "
                        "(repeatable), e.g. your own photos")
    p.add_argument("--fixtures", metavar="DIR", default=None,
                   help="folder of real face photos (live_*, print_*, replay_*, "
                        "two_faces_live_and_replay.*) to report on after training, never "
                        "trained or tuned on (default: $VITFAS_DEMO_FIXTURES, else "
                        "../shared/fixtures/faces beside the repository; skipped when absent)")
    p.add_argument("--no-fixtures", action="store_true", help="no real-photo report")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--subjects", type=int, default=100,
                   help="LFW face crops to use, 3-100 (default 100; fewer for a quick look)")
    p.add_argument("--size", type=int, default=64,
                   help="image and model input side in pixels, a multiple of 8 (default 64)")
    p.add_argument("--seed", type=int, default=0, help="data, splits and training seed")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitfas.demo.run import format_summary, run_demo

    quiet = bool(getattr(args, "quiet", False))  # `vitfas demo -q` or `vitfas -q demo`
    problems = [f"--predict {p}: no such file or folder" for p in args.predict
                if not Path(p).exists()]
    if not 3 <= args.subjects <= 100:
        problems.append(f"--subjects must be 3-100, got {args.subjects}")
    if args.fixtures is not None and not Path(args.fixtures).is_dir():
        problems.append(f"--fixtures {args.fixtures}: no such folder")
    if args.fixtures is not None and args.no_fixtures:
        problems.append("--fixtures and --no-fixtures: give one or the other")
    if args.epochs < 1:
        problems.append(f"--epochs must be at least 1, got {args.epochs}")
    if args.size < 8 or args.size % 8:
        problems.append(f"--size must be a positive multiple of 8, got {args.size}")
    if problems:
        for msg in problems:
            print(f"vitfas demo: error: {msg}", file=sys.stderr)
        return 2
    summary = run_demo(args.out, epochs=args.epochs, predict=args.predict, quiet=quiet,
                       size=args.size, subjects=args.subjects, seed=args.seed,
                       fixtures="" if args.no_fixtures else args.fixtures)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
    return 0
