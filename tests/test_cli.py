"""The top-level command line: lazy verbs, --version, global options, help text."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from vitfas import __version__
from vitfas.cli import COMMANDS, build_parser, find_verb, main


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[
        tuple[list[str], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, [*path, name])


@pytest.fixture(scope="module")
def full_parser() -> argparse.ArgumentParser:
    return build_parser()


def test_version_names_vitfas_and_torch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"vitfas {__version__} (torch {version('torch')}, Python ")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["config", "list"]])
def test_help_and_version_import_no_heavy_library(argv: list[str]) -> None:
    """The fast start is structural: torch, numpy, cv2 are never imported for these."""
    code = (
        "import sys\nfrom vitfas.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main({argv!r})\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'cv2', 'PIL', 'sklearn', 'matplotlib',"
        " 'fastapi', 'onnxruntime') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "0 []", res.stdout + res.stderr


def test_every_verb_registered_under_its_name(full_parser: argparse.ArgumentParser) -> None:
    sub = next(a for a in full_parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    # a lazily built parser lists the same verbs with the same one-line summaries
    lazy = build_parser([])
    flat = " ".join(lazy.format_help().split())
    for name, (_, summary) in COMMANDS.items():
        assert f" {name} {summary} " in flat, name


def test_find_verb_skips_global_options() -> None:
    assert find_verb(["-q", "-v", "info", "x"]) == "info"
    assert find_verb(["--version"]) is None
    assert find_verb([]) is None


def test_global_options_after_the_verb(full_parser: argparse.ArgumentParser) -> None:
    args = full_parser.parse_args(["info", "vit_tiny_patch16_224", "-q"])
    assert args.quiet is True and args.verbose is False
    args = full_parser.parse_args(["-v", "info", "vit_tiny_patch16_224"])
    assert args.verbose is True and args.quiet is False
    args = full_parser.parse_args(["data", "index", "r", "-l", "folder", "-o", "m.csv", "-q"])
    assert args.quiet is True
    args = full_parser.parse_args(["demo", "-q"])  # demo's own -q still works
    assert args.quiet is True


def test_help_text_plain_with_defaults(full_parser: argparse.ArgumentParser) -> None:
    for path, parser in _walk(full_parser, ["vitfas"]):
        text = parser.format_help()
        where = " ".join(path)
        assert "``" not in text and ":class:" not in text, f"RST markup in {where} --help"
        assert "default: None" not in text, where
        for action in parser._actions:
            if action.option_strings and action.default not in (
                    None, False, argparse.SUPPRESS) and action.dest != "help":
                shown = parser._get_formatter()._expand_help(action) if action.help else ""
                assert "default" in shown.lower(), f"{where} {action.option_strings}: no default"


def test_layout_descriptions_are_whole(full_parser: argparse.ArgumentParser) -> None:
    from vitfas.data.layouts import LAYOUTS

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        full_parser.parse_args(["data", "index", "--help"])
    flat = " ".join(buf.getvalue().split())
    for name, cls in LAYOUTS.items():
        first = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        assert first.endswith("."), f"layout {name}: first paragraph is not a sentence"
        assert f"{name}: {first.replace('``', '')}" in flat, name


def test_unknown_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuchverb"]) == 2
    assert "invalid choice: 'nosuchverb'" in capsys.readouterr().err


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("line", "want", "absent"), [
    ("vitfas in", {"info"}, {"train"}),
    ("vitfas info deit_tiny_p", {"deit_tiny_patch16_224"}, set()),
    ("vitfas config show synth", {"synthetic_halftone"}, set()),
    ("vitfas train --ov", {"--overwrite"}, set()),
])
def test_shell_completion_of_verbs_options_and_names(
        tmp_path: Path, line: str, want: set[str], absent: set[str]) -> None:
    """What the shell gets on TAB (argcomplete's protocol, run as the shell runs it)."""
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    subprocess.run([sys.executable, "-c", "from vitfas.cli import main; main()"], env=env,
                   capture_output=True, timeout=100, check=False)
    got = {c.strip() for c in out.read_text().split("\n") if c.strip()}
    assert want <= got and not absent & got, got
