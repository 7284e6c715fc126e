"""Manifests: the CSV every data step reads and writes.

Columns ``path, label, attack_type, dataset, subject, video, frame, split`` (in that order),
then any extra columns, which are kept and never required. ``path`` is relative to the
manifest's own folder (absolute paths are allowed and left alone); ``label`` is ``live`` or
``spoof`` for FAS (any class name for generic classification); ``attack_type`` is ``none``
for live rows; ``frame`` is empty for a whole video or an image; ``split`` is ``train``,
``dev`` or ``test`` (or empty).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from vitfas.errors import BadDataError

COLUMNS: tuple[str, ...] = (
    "path", "label", "attack_type", "dataset", "subject", "video", "frame", "split",
)
FAS_LABELS: tuple[str, ...] = ("spoof", "live")
SPLITS: tuple[str, ...] = ("train", "dev", "test")


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Read a manifest CSV into a list of row dicts (all values strings; paths as written).

    Raises:
        BadDataError: missing/empty file, a missing required column, or a row without a
            path; the message names the file (and line).
    """
    p = Path(path)
    if not p.is_file():
        raise BadDataError(f"{p}: manifest not found")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise BadDataError(f"{p}: empty manifest, expected a header with {', '.join(COLUMNS)}")
        missing = [c for c in COLUMNS if c not in reader.fieldnames]
        if missing:
            raise BadDataError(
                f"{p}: manifest lacks column(s) {missing}; expected {', '.join(COLUMNS)}, "
                f"found {', '.join(reader.fieldnames)}"
            )
        rows = []
        for i, row in enumerate(reader, start=2):
            if None in row:
                raise BadDataError(f"{p}:{i}: more fields than header columns")
            if not row["path"]:
                raise BadDataError(f"{p}:{i}: empty path")
            rows.append({k: (v if v is not None else "") for k, v in row.items()})
    return rows


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write rows as a manifest CSV (standard columns first, extra columns after, in order of
    first appearance). Missing standard values are written empty. Written atomically."""
    p = Path(path)
    rows = list(rows)
    extra: list[str] = []
    for r in rows:
        for k in r:
            if k not in COLUMNS and k not in extra:
                extra.append(k)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*COLUMNS, *extra], extrasaction="raise")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in (*COLUMNS, *extra)})
    os.replace(tmp, p)
    return p


def resolve_path(manifest_path: str | Path, row: Mapping[str, str]) -> Path:
    """Absolute path of a row's file: relative paths are taken from the manifest's folder."""
    p = Path(row["path"])
    if p.is_absolute():
        return p
    return (Path(manifest_path).resolve().parent / p).resolve()


def relative_to_manifest(file: str | Path, manifest_path: str | Path) -> str:
    """The path to store for ``file`` in a manifest written at ``manifest_path`` (POSIX
    separators; relative when possible, else absolute)."""
    f = Path(file).resolve()
    base = Path(manifest_path).resolve().parent
    try:
        return Path(os.path.relpath(f, base)).as_posix()
    except ValueError:  # different drives on Windows
        return f.as_posix()


def rebase_rows(
    rows: Iterable[Mapping[str, str]], src_manifest: str | Path, dst_manifest: str | Path
) -> list[dict[str, str]]:
    """Copy rows read from ``src_manifest`` so their paths are right in ``dst_manifest``."""
    out = []
    for r in rows:
        d = dict(r)
        d["path"] = relative_to_manifest(resolve_path(src_manifest, r), dst_manifest)
        out.append(d)
    return out


def summarize(rows: Iterable[Mapping[str, str]]) -> dict[str, dict[str, dict[str, int]]]:
    """Counts per dataset -> split -> label (for the CLI summaries)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        d = out.setdefault(r.get("dataset", "") or "-", {})
        s = d.setdefault(r.get("split", "") or "-", {})
        s[r.get("label", "")] = s.get(r.get("label", ""), 0) + 1
    return out
