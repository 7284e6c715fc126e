# PYTHON_ARGCOMPLETE_OK
"""The ``vitfas`` command line: verb first, human summary by default, ``--json`` for machines.

Each verb lives in the module of its part of the package and exposes
``register(subparsers) -> None``; the parser it adds carries ``func(args) -> int`` as its
default. Exit codes: 0 success, 1 failure, 2 usage error.

Start-up stays fast because a verb's module is imported only when that verb runs (or its
``--help`` is asked for): ``vitfas --help`` and ``vitfas --version`` import no heavy library.
Adding a verb is one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from vitfas.errors import VitfasError

# One line per verb: name -> (module whose ``register(subparsers)`` adds it, one-line summary
# shown by ``vitfas --help`` without importing the module).
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("vitfas.models.info", "list models, or show a model's shapes, size and cost"),
    "config": ("vitfas.configs", "list the example configurations shipped with vitfas"),
    "train": ("vitfas.train.cli", "train a ViT classifier into a model bundle"),
    "pretrain-mae": ("vitfas.pretrain.mae", "masked-autoencoder pre-training"),
    "eval": ("vitfas.metrics.evaluation", "score a dataset with a bundle: metrics and report"),
    "data": ("vitfas.data.cli", "index datasets, build protocols, crop faces"),
    "explain": ("vitfas.explain.cli", "attention maps, rollout and position embeddings"),
    "baseline": ("vitfas.baselines.cli",
                 "classical baselines (LBP + RBF SVM) trained and evaluated on a manifest"),
    "predict": ("vitfas.predict.cli", "score faces in images, folders and videos"),
    "export": ("vitfas.export.onnx", "export a bundle's network to ONNX"),
    "serve": ("vitfas.serve.cli", "serve a bundle over HTTP with a web page"),
    "demo": ("vitfas.demo.cli", "the whole pipeline on built-in data, in minutes on a CPU"),
}

GLOBAL_FLAGS = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}

log = logging.getLogger("vitfas")

_RST_LITERAL = re.compile(r"``(.+?)``", re.S)
_RST_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr):`~?([^`]+)`")


def plain_text(text: str) -> str:
    """Help text without reStructuredText markup: ``x`` and :class:`x` become x."""
    return _RST_ROLE.sub(r"\1", _RST_LITERAL.sub(r"\1", text))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, no RST markup, paragraphs and ``-`` lists kept as written.

    A default is appended as ``(default: X)`` unless the help already names it, or it is
    ``None``/``False``/suppressed (nothing to show).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Wrap each paragraph; keep lists (``- item`` lines, or indented lines under a
        heading) one item per line with a hanging indent."""
        import textwrap

        out = []
        for para in re.split(r"\n\s*\n", plain_text(text).strip("\n")):
            lines = para.splitlines()
            bullets = any(ln.lstrip().startswith(("- ", "* ")) for ln in lines)
            if not (bullets or any(ln.startswith(" ") for ln in lines[1:])):
                out.append(textwrap.fill(" ".join(para.split()), width,
                                         initial_indent=indent, subsequent_indent=indent))
            else:
                items: list[tuple[str, str]] = []  # (leading spaces, text) per item
                for ln in lines:
                    lead, s = ln[: len(ln) - len(ln.lstrip())], ln.strip()
                    if items and bullets and not s.startswith(("- ", "* ")):
                        items[-1] = (items[-1][0], items[-1][1] + " " + s)
                    else:
                        items.append((lead, s))
                out += [textwrap.fill(s, width, initial_indent=indent + lead,
                                      subsequent_indent=indent + lead + "    ",
                                      break_long_words=False, break_on_hyphens=False)
                        for lead, s in items]
            out.append("")
        return "\n".join(out).rstrip("\n")


class Parser(argparse.ArgumentParser):
    """The parser class of every vitfas parser: one help formatter everywhere."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from vitfas import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover
        torch_version = "not installed"
    return (f"vitfas {__version__} (torch {torch_version}, Python "
            f"{sys.version.split()[0]})")


def _finish(parser: argparse.ArgumentParser, top: bool) -> None:
    """``-q``/``-v`` on ``parser`` (and its sub-commands) unless it defines them itself, and
    a help line for any option without one whose default is worth showing.

    Verb-level copies default to SUPPRESS so they never overwrite the top-level value.
    """
    for action in parser._actions:
        if not action.help and action.default not in (None, False, argparse.SUPPRESS) \
                and action.option_strings:
            action.help = "default: %(default)s"
    have = parser._option_string_actions
    default: object = False if top else argparse.SUPPRESS
    if "-q" not in have and "--quiet" not in have:
        parser.add_argument("-q", "--quiet", action="store_true", default=default,
                            help="no progress bars or info logs")
    if "-v" not in have and "--verbose" not in have:
        parser.add_argument("-v", "--verbose", action="store_true", default=default,
                            help="debug logging")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _finish(child, top=False)


def build_parser(verbs: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser.

    Args:
        verbs: verbs whose modules are imported and registered in full; the others get a
            placeholder carrying their summary only. ``None`` registers every verb (the
            complete parser, as tests and documentation checks use).
    """
    load = set(COMMANDS) if verbs is None else set(verbs) & set(COMMANDS)
    parser = Parser(prog="vitfas", description="Vision Transformers for face anti-spoofing.")
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the vitfas, torch and Python versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, summary) in COMMANDS.items():
        if name in load:
            importlib.import_module(module).register(sub)
            if name not in sub.choices:
                raise RuntimeError(f"{module}.register() did not add the verb {name!r}")
            # the summary in COMMANDS is the one listed, whether or not the module is loaded
            for choice in sub._choices_actions:
                if choice.dest == name:
                    choice.help = summary
        else:
            sub.add_parser(name, help=summary, add_help=False)
    _finish(parser, top=True)
    return parser


def find_verb(argv: Sequence[str]) -> str | None:
    """The verb in ``argv``: its first word that is not a global option."""
    for tok in argv:
        if tok in GLOBAL_FLAGS:
            continue
        return None if tok.startswith("-") else tok
    return None


def autocomplete(**kwargs: Any) -> None:
    """Shell completion (argcomplete) when the shell asks for it; returns otherwise.

    Only the verb being completed is imported, so a TAB costs what that verb's ``--help``
    does. ``kwargs`` go to ``argcomplete.autocomplete``.
    """
    if "_ARGCOMPLETE" not in os.environ:
        return
    import shlex

    import argcomplete

    line = os.environ.get("COMP_LINE", "")
    line = line[: int(os.environ.get("COMP_POINT", len(line)))]
    try:
        words = shlex.split(line)[1:]
    except ValueError:  # an open quote
        words = line.split()[1:]
    verb = find_verb(words)
    # a verb's own options once the verb is typed in full (a space after it)
    full = verb in COMMANDS and (len(words) > 1 or line.endswith(" "))
    argcomplete.autocomplete(build_parser([verb] if full else []), **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    autocomplete()
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = find_verb(argv)
    parser = build_parser([verb] if verb else [])
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
