"""Example configurations shipped inside the package, and ``vitfas config {list, show}``.

``vitfas train`` and ``vitfas pretrain-mae`` take either a YAML file or the name of one of
these (``vitfas train synthetic_halftone``); ``vitfas config show NAME > my.yaml`` copies one
to edit.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from vitfas.errors import BadConfigError

_SUFFIX = ".yaml"


def list_configs() -> dict[str, str]:
    """Shipped config name -> its first comment line (what it is for), sorted by name."""
    out: dict[str, str] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(_SUFFIX):
            lines = entry.read_text().splitlines()
            first = lines[0] if lines else ""
            out[entry.name[: -len(_SUFFIX)]] = first.lstrip("# ").rstrip(":")
    return out


def config_text(name: str) -> str:
    """The YAML text of the shipped config ``name`` (``.yaml`` optional).

    Raises:
        BadConfigError: no shipped config of that name (the names are listed).
    """
    stem = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name
    entry = resources.files(__name__) / f"{stem}{_SUFFIX}"
    if not entry.is_file():
        raise BadConfigError(
            f"no shipped config named {name!r}; shipped: {', '.join(list_configs())}"
        )
    return entry.read_text()


def resolve_config(path: str | Path) -> tuple[Path | None, str]:
    """A config argument -> ``(file or None, YAML text)``.

    An existing file wins; otherwise a bare name (no folder part) is looked up among the
    shipped configs. Relative file paths are relative to the current working directory.

    Raises:
        BadConfigError: neither a file nor a shipped name.
    """
    p = Path(path)
    if p.is_file():
        return p, p.read_text()
    if p.parent == Path(".") and p.stem in list_configs():
        return None, config_text(p.name)
    shipped = ", ".join(list_configs())
    raise BadConfigError(
        f"config file {p} does not exist (relative paths are taken from the current folder "
        f"{Path.cwd()}); shipped configs usable by name: {shipped}"
    )


def run_list(args: argparse.Namespace) -> int:
    for name, what in list_configs().items():
        print(f"{name:<26} {what}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(config_text(args.name), end="")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``config`` verb with ``list`` and ``show``."""
    p = subparsers.add_parser(
        "config",
        help="list or print the example configurations shipped with vitfas",
        description="The example configurations shipped with vitfas. Pass a name straight "
        "to train or pretrain-mae (vitfas train synthetic_halftone), or copy one to edit "
        "(vitfas config show synthetic_halftone > my.yaml).",
    )
    sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    ls = sub.add_parser("list", help="names of the shipped configs, with what each is for")
    ls.set_defaults(func=run_list)
    sh = sub.add_parser("show", help="print a shipped config (redirect it to a file to edit)")
    name = sh.add_argument("name", help="a name from 'vitfas config list'")
    name.completer = lambda **_: list(list_configs())  # type: ignore[attr-defined]
    sh.set_defaults(func=run_show)
