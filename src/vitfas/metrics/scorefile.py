"""``vitfas eval --scores SCORES.csv MANIFEST``: evaluate any method's scores.

The score file is a CSV with at least the columns ``path`` and ``score``:

* ``path`` names a manifest row by its path **as written in the manifest** (relative to the
  manifest's folder; ``./`` prefixes and ``\\`` separators are normalised). An absolute
  path also matches a manifest row whose file resolves to it. When the file has a ``frame``
  column, rows are matched on ``(path, frame)`` (video manifests have one path per frame).
* ``score`` is P(live) or any other higher-is-more-live value. An empty cell or ``nan`` is
  a failure to acquire (the method could not score the image), as is ``fta`` = 1/true/yes
  when that column exists. ``scores.csv`` written by ``vitfas eval`` or ``vitfas baseline``
  is a valid score file.

Rules:

* a score row whose path matches no manifest row is an error (all such paths listed);
* a dev/test manifest row with **no** score row is an error listing them, unless
  ``missing="fta"`` (``--missing fta``), which counts each as a failure to acquire;
* a manifest row marked ``fta`` stays a failure to acquire whatever its score (the same
  rule as ``vitfas eval``); train rows need no score and their scores are ignored.
"""

from __future__ import annotations

import csv
import logging
import math
import posixpath
from pathlib import Path

import numpy as np

from vitfas.data.manifest import read_manifest, resolve_path
from vitfas.errors import BadConfigError, BadDataError
from vitfas.metrics.evaluation import ScoredManifest, row_is_fta

log = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "fta")
_TRUE = {"1", "true", "yes", "y"}
_SHOW = 10  # paths listed in an error message


def normalise_path(p: str) -> str:
    """A path as a matching key: POSIX separators, no ``./``, ``a/../b`` folded."""
    s = str(p).strip().replace("\\", "/")
    return posixpath.normpath(s) if s else s


def _listing(items: list[str]) -> str:
    more = f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def read_score_file(path: str | Path) -> tuple[list[dict[str, str]], bool]:
    """Rows of a score CSV (each with ``line``, ``path``, ``frame``, ``score``, ``fta``
    as strings) and whether the file has a ``frame`` column.

    Raises:
        BadDataError: missing file, no ``path``/``score`` column, or an empty path.
    """
    p = Path(path)
    if not p.is_file():
        raise BadDataError(f"{p}: score file not found")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        missing = [c for c in ("path", "score") if c not in cols]
        if missing:
            raise BadDataError(
                f"{p}: score file lacks column(s) {missing}; expected at least path,score; "
                f"found {', '.join(cols) or 'no header'}"
            )
        has_frame = "frame" in cols
        out = []
        for line, r in enumerate(reader, start=2):
            if not str(r.get("path") or "").strip():
                raise BadDataError(f"{p}:{line}: empty path")
            out.append({"line": str(line), "path": str(r["path"]),
                        "frame": str(r.get("frame") or "").strip(),
                        "score": str(r.get("score") or "").strip(),
                        "fta": str(r.get("fta") or "").strip().lower()})
    return out, has_frame


def _parse_score(text: str, where: str) -> float:
    """A score cell -> float; ``nan`` for an empty cell or ``nan`` (failure to acquire)."""
    if text == "" or text.lower() == "nan":
        return math.nan
    try:
        v = float(text)
    except ValueError:
        raise BadDataError(f"{where}: score {text!r} is not a number") from None
    if not math.isfinite(v):
        raise BadDataError(f"{where}: score {text!r} is not finite (leave it empty for a "
                           "failure to acquire)")
    return v


def scores_from_file(
    scores_csv: str | Path,
    manifest: str | Path,
    splits: tuple[str, ...] = ("dev", "test"),
    missing: str = "error",
) -> tuple[ScoredManifest, int]:
    """Match a score file to a manifest's rows (see the module doc for the rules).

    Args:
        scores_csv: the ``path,score[,frame][,fta]`` CSV.
        manifest: the manifest the paths refer to.
        splits: splits that need a score (every row when the manifest has none of them).
        missing: ``"error"`` or ``"fta"`` for rows of those splits without a score row.

    Returns:
        ``(scored manifest, number of rows counted as FTA because they had no score)``;
        scores ``[N]`` in manifest order, ``nan`` where not scored or FTA.

    Raises:
        BadDataError: unmatched or duplicate score paths, ambiguous manifest paths, bad
            numbers, or missing scores with ``missing="error"``.
    """
    if missing not in MISSING_POLICIES:
        raise BadConfigError(f"missing: expected one of {MISSING_POLICIES}, got {missing!r}")
    rows = read_manifest(manifest)
    entries, has_frame = read_score_file(scores_csv)
    n = len(rows)

    def key(path: str, frame: str) -> tuple[str, str]:
        return normalise_path(path), frame if has_frame else ""

    index: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        index.setdefault(key(r["path"], str(r.get("frame", "") or "").strip()), []).append(i)
    absolute: dict[tuple[str, str], list[int]] = {}
    if any(Path(e["path"].strip()).is_absolute() for e in entries):
        for i, r in enumerate(rows):
            k = (resolve_path(manifest, r).as_posix(), key(r["path"], r.get("frame", ""))[1])
            absolute.setdefault(k, []).append(i)

    matched: dict[int, dict[str, str]] = {}
    unmatched: list[str] = []
    for e in entries:
        k = key(e["path"], e["frame"])
        hits = index.get(k)
        if hits is None and Path(k[0]).is_absolute():
            hits = absolute.get((Path(k[0]).resolve().as_posix(), k[1]))
        shown = e["path"] + (f" frame {e['frame']}" if has_frame and e["frame"] else "")
        if hits is None:
            unmatched.append(shown)
            continue
        if len(hits) > 1:
            raise BadDataError(
                f"{scores_csv}:{e['line']}: {shown} names {len(hits)} manifest rows "
                f"(lines {[h + 2 for h in hits][:5]} of {manifest}); add a 'frame' column"
            )
        if hits[0] in matched:
            raise BadDataError(
                f"{scores_csv}: {shown} has two score rows (lines "
                f"{matched[hits[0]]['line']} and {e['line']})"
            )
        matched[hits[0]] = e
    if unmatched:
        raise BadDataError(
            f"{scores_csv}: {len(unmatched)} score row(s) match no row of {manifest} (paths "
            f"are matched as written in the manifest, relative to its folder): "
            f"{_listing(unmatched)}"
        )

    in_split = np.array([str(r.get("split", "")).strip() in set(splits) for r in rows])
    if not in_split.any():
        in_split[:] = True
    scores = np.full(n, np.nan)
    fta = np.array([row_is_fta(r) for r in rows])
    absent: list[int] = []
    for i in np.flatnonzero(in_split & ~fta):
        e = matched.get(int(i))
        if e is None:
            absent.append(int(i))
            fta[i] = True
            continue
        v = _parse_score(e["score"], f"{scores_csv}:{e['line']}")
        if e["fta"] in _TRUE or math.isnan(v):
            fta[i] = True
        else:
            scores[i] = v
    if absent and missing == "error":
        raise BadDataError(
            f"{scores_csv}: no score for {len(absent)} row(s) of {manifest} in splits "
            f"{list(splits)}: {_listing([rows[i]['path'] for i in absent])}; score them, or "
            "pass --missing fta to count them as failures to acquire"
        )
    if absent:
        log.warning("%d manifest row(s) have no score; counted as failures to acquire",
                    len(absent))
    return ScoredManifest(rows, scores, fta), len(absent)
