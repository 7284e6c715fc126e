"""The ``vitfas`` command line: verb first, human summary by default, ``--json`` for machines.

Each verb lives in the module of its part of the package and exposes
``register(subparsers) -> None``; the parser it adds carries ``func(args) -> int`` as its
default. Exit codes: 0 success, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from vitfas.errors import VitfasError

# Modules that add a verb. Each new part of vitfas appends its own line here.
COMMAND_MODULES: tuple[str, ...] = (
    "vitfas.models.info",
    "vitfas.train.cli",
    "vitfas.pretrain.mae",
    "vitfas.metrics.evaluation",
    "vitfas.data.cli",
    "vitfas.explain.cli",
    "vitfas.predict.cli",
    "vitfas.export.onnx",
    "vitfas.serve.cli",
    "vitfas.demo.cli",
)

log = logging.getLogger("vitfas")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered verb."""
    parser = argparse.ArgumentParser(
        prog="vitfas",
        description="Vision Transformers for face anti-spoofing.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    level = logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO)
    rank = os.environ.get("RANK", "0").strip() or "0"
    fmt = "%(levelname)s %(name)s: %(message)s"
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # under torchrun
        fmt = f"[rank {rank}] {fmt}"
        if rank != "0" and not args.verbose:
            level = logging.WARNING  # one copy of every INFO line: rank 0's
    logging.basicConfig(level=level, format=fmt)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VitfasError as exc:
        _fail_fast_if_distributed(exc, args.command)
        print(f"vitfas {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except Exception as exc:
        _fail_fast_if_distributed(exc, args.command)
        raise


def _fail_fast_if_distributed(exc: BaseException, command: str) -> None:
    """Under torchrun, a failed rank names itself and exits at once (the others would wait
    in a collective for it); returns in a single process."""
    if "torch.distributed" in sys.modules:
        from vitfas.distributed import fail_fast

        fail_fast(exc, f"vitfas {command}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
