"""How the demo's bundle decides a folder of real face photos (reporting only).

The project keeps a few real photographs of live faces, print attacks and replay attacks
beside the repository, in ``../shared/fixtures/faces``. ``vitfas demo`` scores them with its
trained bundle (faces found by the bundle's detector, EXIF rotation applied) and prints
how many it got right. **They are never used to train, select or tune anything**: the
demo's threshold comes from its dev split, and this report runs after training.

The expected label comes from the file name:

* ``live_*`` -> live; ``print_*`` and ``replay_*`` -> spoof (attack);
* a name listed in :data:`MULTI_FACE_LAYOUT` holds several faces whose kinds are given
  left to right (the folder's README says which is which); faces are matched to them by
  the horizontal centre of their boxes;
* any other name is scored and listed, but not counted.

A single-face photo is right when its largest face is decided as expected; a photo where
no face is found (a failure to acquire) or that cannot be read counts as wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FIXTURES_ENV",
    "MULTI_FACE_LAYOUT",
    "default_fixtures_dir",
    "empty_report",
    "expected_from_name",
    "fixture_markdown",
    "fixture_report",
    "format_fixture_report",
    "score_fixtures",
]

#: Environment variable naming the fixture folder (``vitfas demo --fixtures`` wins over it).
FIXTURES_ENV = "VITFAS_DEMO_FIXTURES"

#: Photos with several faces: file stem -> the kind of each face, left to right
#: (``live``, ``print`` or ``replay``). ``two_faces_live_and_replay``: per the fixture
#: folder's README, the phone-replay face is on the left and the live face on the right.
MULTI_FACE_LAYOUT: dict[str, tuple[str, ...]] = {
    "two_faces_live_and_replay": ("replay", "live"),
}

_PREFIXES = {"live": "live", "print": "print", "replay": "replay"}


def repo_root() -> Path:
    """The source checkout holding this package (the folder with ``pyproject.toml`` two
    levels above ``src/vitfas``), or the current folder for an installed package."""
    import vitfas

    root = Path(vitfas.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def default_fixtures_dir() -> Path:
    """``$VITFAS_DEMO_FIXTURES`` when set, else ``<repository root>/../shared/fixtures/faces``."""
    env = os.environ.get(FIXTURES_ENV)
    if env:
        return Path(env)
    return repo_root().parent / "shared" / "fixtures" / "faces"


def expected_from_name(name: str) -> tuple[str, ...] | None:
    """The kind of each face a fixture photo holds, from its file name, or ``None`` when
    the name follows no convention.

    >>> expected_from_name("print_a4_exif6.jpg")
    ('print',)
    >>> expected_from_name("two_faces_live_and_replay.png")
    ('replay', 'live')
    """
    stem = Path(name).stem
    if stem in MULTI_FACE_LAYOUT:
        return MULTI_FACE_LAYOUT[stem]
    prefix = stem.split("_", 1)[0].lower()
    return (_PREFIXES[prefix],) if prefix in _PREFIXES else None


def _label(kind: str) -> str:
    return "live" if kind == "live" else "spoof"


def score_fixtures(predictor: Any, folder: str | Path) -> list[dict[str, Any]]:
    """Run ``predictor`` (a :class:`vitfas.predict.Predictor`, or anything with its
    ``detect`` and ``predict_crops``) on every image and video in ``folder``; one
    ``vitfas predict`` JSON record per file (never raises for a bad file)."""
    from vitfas.data.inputs import expand_inputs
    from vitfas.predict.cli import predict_one

    return [predict_one(predictor, f, None, i)
            for i, f in enumerate(expand_inputs([Path(folder)]))]


def _face_row(file: str, expected: str | None, where: str, face: dict[str, Any] | None,
              note: str = "") -> dict[str, Any]:
    decision = face.get("decision") if face else None
    right = None if expected is None else (decision is not None
                                           and decision == _label(expected))
    return {"file": file, "expected": expected or "?", "face": where,
            "score": face.get("score") if face else None, "decision": decision,
            "right": right, "note": note}


def empty_report(folder: str | None, status: str, line: str, **extra: Any) -> dict[str, Any]:
    """A :func:`fixture_report` with no photo scored (``status`` ``"skipped"`` or ``"off"``),
    ``line`` saying why; ``extra`` keys are added (``reason``)."""
    return {"folder": folder, "status": status, **extra, "rows": [],
            "single": {"right": 0, "n": 0}, "multi": [], "line": line}


def fixture_report(folder: str | Path, records: Sequence[dict[str, Any]] | None
                   ) -> dict[str, Any]:
    """Count what the bundle got right on the fixture photos.

    Args:
        folder: the fixture folder (reported as given).
        records: ``vitfas predict`` records, one per file (:func:`score_fixtures`), or
            ``None`` when the folder is absent (the report then says it was skipped).

    Returns:
        ``{"folder", "status": "ok"|"skipped", "reason"?, "rows": [...], "single":
        {"right", "n"}, "multi": [{"file", "faces": [...], "found", "right", "n"}],
        "line"}``; one row per scored face (``file``, ``expected`` kind, ``face``
        position, ``score`` = P(live), ``decision``, ``right``: bool, or ``None`` for a
        file whose name follows no convention).
    """
    folder = str(folder)
    if records is None:
        line = f"skipped: no fixture folder at {folder}"
        return empty_report(folder, "skipped", line, reason=line)
    rows: list[dict[str, Any]] = []
    single_right = single_n = 0
    multi: list[dict[str, Any]] = []
    for rec in records:
        name = Path(rec["path"]).name
        kinds = expected_from_name(name)
        faces = list(rec.get("faces") or [])
        status = rec.get("status", "error")
        problem = ("no face found" if status == "no_face"
                   else rec.get("error", status) if status != "ok" else "")
        if kinds is None or len(kinds) == 1:
            kind = kinds[0] if kinds else None
            note = problem or (f"{len(faces)} faces found; the largest is scored"
                               if len(faces) > 1 else "")
            row = _face_row(name, kind, "largest" if len(faces) > 1 else "",
                            faces[0] if faces else None, note)
            rows.append(row)
            if kind is not None:
                single_n += 1
                single_right += bool(row["right"])
            continue
        # several faces, matched left to right by the centre of their boxes
        by_x = sorted(faces, key=lambda f: (f["box"][0] + f["box"][2]) / 2)
        sides = (["left", "right"] if len(kinds) == 2
                 else [f"{i + 1}. from left" for i in range(len(kinds))])
        item_faces = []
        if len(by_x) != len(kinds):
            note = problem or f"expected {len(kinds)} faces, found {len(by_x)}"
            for kind, side in zip(kinds, sides):
                row = _face_row(name, kind, side, None, note)
                row["right"] = False
                rows.append(row)
                item_faces.append(row)
        else:
            for kind, side, face in zip(kinds, sides, by_x):
                row = _face_row(name, kind, side, face)
                rows.append(row)
                item_faces.append(row)
        multi.append({"file": name, "found": len(by_x), "faces": item_faces,
                      "right": sum(bool(r["right"]) for r in item_faces),
                      "n": len(item_faces)})
    parts = [f"{single_right} of {single_n} single-face photos right"]
    for m in multi:
        desc = ", ".join(
            f"{r['expected']} face ({r['face']}) "
            + (f"P(live) {r['score']:.2f} -> {r['decision']}" if r["score"] is not None
               else r["note"])
            + f" ({'right' if r['right'] else 'wrong'})"
            for r in m["faces"])
        parts.append(f"{_multi_title(m['file'])}: {desc}")
    return {"folder": folder, "status": "ok", "rows": rows,
            "single": {"right": single_right, "n": single_n}, "multi": multi,
            "line": "; ".join(parts)}


def _multi_title(name: str) -> str:
    n = len(MULTI_FACE_LAYOUT.get(Path(name).stem, ()))
    words = {2: "two", 3: "three", 4: "four"}
    return f"{words.get(n, str(n))}-face photo"


def format_fixture_report(rep: dict[str, Any], indent: str = "           ") -> list[str]:
    """The report as text lines: a table (file, expected, face, P(live), decision,
    right/wrong) and the summary line."""
    if rep["status"] != "ok":
        return [rep["line"]]
    head = f"{'file':<32} {'expected':<8} {'face':<8} {'P(live)':>7}  {'decision':<8} result"
    out = [f"{rep['folder']} (reporting only: never trained or tuned on)", indent + head]
    for r in rep["rows"]:
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        res = "-" if r["right"] is None else ("right" if r["right"] else "wrong")
        note = f"  ({r['note']})" if r["note"] else ""
        out.append(indent + f"{r['file']:<32} {r['expected']:<8} {r['face']:<8} {score:>7}  "
                   f"{r['decision'] or '-':<8} {res}{note}")
    out.append(indent + rep["line"])
    return out


def fixture_markdown(rep: dict[str, Any]) -> str:
    """The report as a Markdown section (for ``summary.md``)."""
    lines = ["## Real photos (reporting only)", ""]
    if rep["status"] != "ok":
        return "\n".join([*lines, rep["line"], ""])
    lines += [f"`{rep['folder']}`: scored by the demo bundle (its detector, its dev "
              "threshold); never used to train, select or tune anything.", "",
              "| file | expected | face | P(live) | decision | result |",
              "|---|---|---|---:|---|---|"]
    for r in rep["rows"]:
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        res = "-" if r["right"] is None else ("right" if r["right"] else "wrong")
        if r["note"]:
            res += f" ({r['note']})"
        lines.append(f"| {r['file']} | {r['expected']} | {r['face'] or '-'} | {score} | "
                     f"{r['decision'] or '-'} | {res} |")
    return "\n".join([*lines, "", rep["line"] + ".", ""])
