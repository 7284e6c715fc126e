"""Every ``vitfas ...`` command in README.md and docs/*.md parses with the real parser; the
cheap ones are run, and the output the README shows for ``vitfas info`` is the command's.

Commands are taken from fenced code blocks (``bash``/``sh``/unmarked: every line; ``console``:
lines starting with ``$``; ``text`` blocks are synopses and are skipped), with ``\\``
continuations joined, comments and shell redirections cut, and ``torchrun ... -m vitfas``
/ ``python -m vitfas`` read as ``vitfas``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from vitfas.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_OPERATORS = {">", ">>", "|", "&&", ";", "2>", "&"}


def _blocks(path: Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """``(language, [(line number, line), ...])`` of each fenced block."""
    blocks, current, lang = [], None, ""
    for no, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line.strip())
        if m and current is None:
            current, lang = [], m.group(1)
        elif m:
            blocks.append((lang, current))
            current = None
        elif current is not None:
            current.append((no, line))
    return blocks


def _vitfas_argv(line: str) -> list[str] | None:
    """The arguments after ``vitfas`` in a shell line, or None when it runs something else."""
    words = []
    for tok in shlex.split(line, comments=True):
        if tok in SHELL_OPERATORS:
            break
        words.append(tok)
    if words[:1] == ["vitfas"]:
        return words[1:]
    for i in range(len(words) - 1):  # torchrun ... -m vitfas ..., python -m vitfas ...
        if words[i] == "-m" and words[i + 1] == "vitfas" and words[0] in ("torchrun", "python"):
            return words[i + 2:]
    return None


def doc_commands() -> list[tuple[str, list[str], list[str]]]:
    """``(where, argv, shown output lines)`` for every vitfas command in the docs."""
    found = []
    for path in DOCS:
        for lang, lines in _blocks(path):
            if lang in ("text", "python", "json", "yaml", "csv", "markdown"):
                continue
            i, pending, start = 0, "", 0
            while i < len(lines):
                no, raw = lines[i]
                i += 1
                text = raw.strip()
                if not pending:
                    if lang == "console" and not text.startswith("$ "):
                        continue
                    text, start = text.removeprefix("$ "), no
                pending = f"{pending} {text}" if pending else text
                if pending.endswith("\\"):
                    pending = pending[:-1]
                    continue
                argv = _vitfas_argv(pending)
                pending = ""
                if argv is None:
                    continue
                shown = []  # console blocks: the output printed under the command
                while lang == "console" and i < len(lines) and \
                        not lines[i][1].startswith("$ "):
                    shown.append(lines[i][1])
                    i += 1
                found.append((f"{path.relative_to(ROOT)}:{start}", argv, shown))
    return found


COMMANDS = doc_commands()


def test_docs_have_commands() -> None:
    where = {w.split(":")[0] for w, _, _ in COMMANDS}
    assert len(COMMANDS) > 50 and {"README.md", "docs/cli.md", "docs/train.md"} <= where


@pytest.fixture(scope="module")
def parser():
    return build_parser()


@pytest.mark.parametrize(("where", "argv"), [(w, a) for w, a, _ in COMMANDS],
                         ids=[w for w, _, _ in COMMANDS])
def test_doc_command_parses(parser, where: str, argv: list[str]) -> None:
    if argv in (["--help"], ["--version"]) or "--help" in argv:
        return  # these exit by design; they are run below
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `vitfas {' '.join(argv)}` does not parse:\n{err.getvalue()}")
    assert args.command == argv[[a.startswith("-") for a in argv].index(False)]


def _cheap(argv: list[str]) -> bool:
    return (argv in (["--help"], ["--version"]) or argv[:2] in (["config", "list"],
            ["config", "show"], ["info", "--list"], ["info", "--help"])
            or (argv[:1] == ["info"] and len(argv) == 2))


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("where", "argv", "shown"),
                         [c for c in COMMANDS if _cheap(c[1])],
                         ids=[c[0] for c in COMMANDS if _cheap(c[1])])
def test_cheap_doc_command_runs(where: str, argv: list[str], shown: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc == 0, f"{where}: `vitfas {' '.join(argv)}` exited {rc}"
    assert out.getvalue().strip(), where
    if shown:  # the output the docs show is the command's own
        assert [ln.rstrip() for ln in shown] == out.getvalue().rstrip("\n").splitlines(), where
