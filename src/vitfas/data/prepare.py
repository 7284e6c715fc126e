"""``vitfas data prepare``: sample frames, detect and crop faces, write crops + a manifest.

For every manifest row (a video or an image) the work is one *unit*: decode (``n`` frames
sampled uniformly from a video), detect faces with the crop recipe's detector, keep the
largest face, write its square crop, and record the result in ``DIR/.parts/<key>.json``.
A unit whose part file exists is not redone, so an interrupted run resumes where it
stopped. Frames with no face are failures to acquire (FTA): listed in ``failures.csv``
(reason ``no_face``) and counted per dataset, never silently dropped. Unreadable inputs
(missing, empty, truncated, corrupt) are skipped, listed (reason ``unreadable``) and
counted; the run goes on.

Output folder::

    DIR/manifest.csv      one row per crop (input columns + source_path, face_box, face_score,
                          fta=0), and one row per frame without a face (fta=1, path = the
                          source video or image, face_box empty): the FTA convention that
                          `vitfas eval` scores and ManifestDataset skips
    DIR/failures.csv      path, dataset, frame, reason (no_face | unreadable), detail
    DIR/summary.json      per-dataset counts
    DIR/prepare.json      settings (crop recipe, frames per video, format, input manifest)
    DIR/crops/<dataset>/<video>-<hash>/<frame>.png
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vitfas.data.io import load_image, save_image
from vitfas.data.manifest import (
    read_manifest,
    relative_to_manifest,
    resolve_path,
    write_manifest,
)
from vitfas.data.video import is_video_file, read_frame, sample_frames
from vitfas.distributed import barrier, broadcast_object, get_rank, shard_indices
from vitfas.errors import BadConfigError, BadDataError, BadImageError, BadVideoError
from vitfas.faces import CropRecipe, Face

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ("path", "dataset", "frame", "reason", "detail")


@dataclass(frozen=True)
class PrepareSettings:
    """What a prepared folder was made with (``prepare.json``); a resumed run must match."""

    recipe: CropRecipe
    frames: int | None = 10
    image_format: str = "png"
    boxes: str = "detect"

    def to_dict(self) -> dict[str, Any]:
        d = {"recipe": self.recipe.to_dict(), "frames": self.frames,
             "format": self.image_format}
        if self.boxes != "detect":  # folders prepared before --boxes existed stay valid
            d["boxes"] = self.boxes
        return d


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, old value, new value)`` for each setting that differs, nested fields named
    with dots (``recipe.size``)."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out

    a = {k.rstrip("."): v for k, v in flat(old).items()}
    b = {k.rstrip("."): v for k, v in flat(new).items()}
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k in b and a.get(k) != b.get(k)]


def _unit_key(src: Path, frame: str) -> str:
    return hashlib.sha1(f"{src}|{frame}".encode()).hexdigest()[:16]


def _safe(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._/-]+", "_", s).strip("/")
    parts = [p for p in s.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "item"


def _box_from_rel(rel: str, w: int, h: int) -> tuple[float, float, float, float] | None:
    if not rel:
        return None
    v = [float(x) for x in rel.split()]
    if len(v) != 4:
        return None
    box = (v[0] * w, v[1] * h, v[2] * w, v[3] * h)
    if box[2] - box[0] <= 1 or box[3] - box[1] <= 1:
        return None
    return box


# one recipe per worker process (detectors are not pickled)
_WORKER_RECIPE: CropRecipe | None = None


def _init_worker(recipe: dict[str, Any]) -> None:
    global _WORKER_RECIPE
    _WORKER_RECIPE = CropRecipe.from_dict(recipe)


def process_unit(
    row: Mapping[str, str],
    src: Path,
    out_dir: Path,
    settings: PrepareSettings,
    recipe: CropRecipe | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Crop one manifest row; returns ``{"rows": [...], "failures": [...]}`` (crop paths
    relative to ``out_dir``)."""
    recipe = recipe or _WORKER_RECIPE or settings.recipe
    dataset = row.get("dataset", "") or "data"
    failures: list[dict[str, str]] = []
    out_rows: list[dict[str, str]] = []
    frame_field = row.get("frame", "")
    try:
        if is_video_file(src):
            if frame_field != "":
                frames = [(int(frame_field), read_frame(src, int(frame_field)))]
            else:
                frames = sample_frames(src, settings.frames)
        else:
            frames = [(-1, load_image(src))]
    except (BadImageError, BadVideoError) as exc:
        return {"rows": [], "failures": [{
            "path": str(src), "dataset": dataset, "frame": frame_field, "reason": "unreadable",
            "detail": str(exc)}]}
    stem = _safe(row.get("video") or Path(row["path"]).with_suffix("").as_posix())
    tag = hashlib.sha1(str(src).encode()).hexdigest()[:8]
    for idx, rgb in frames:
        fstr = "" if idx < 0 else str(idx)
        face: Face | None = None
        box = _box_from_rel(row.get("face_box_rel", ""), rgb.shape[1], rgb.shape[0])
        if box is not None and (settings.boxes == "manifest" or recipe.detector == "none"):
            face = Face(box=box, score=1.0)
        else:
            found = recipe.face_detector.detect(rgb)
            face = found[0] if found else None
        if face is None:
            failures.append({"path": str(src), "dataset": dataset, "frame": fstr,
                             "reason": "no_face", "detail": f"{recipe.detector}: no face"})
            # kept in the manifest as a failure to acquire (fta=1), pointing at the source
            out_rows.append({**row, "path": str(src), "frame": fstr, "source_path": str(src),
                             "face_box": "", "face_score": "", "fta": "1"})
            continue
        crop = recipe.crop(rgb, face)
        if recipe.colour_order == "BGR":  # files are always stored RGB
            crop = np.ascontiguousarray(crop[:, :, ::-1])
        name = f"{'image' if idx < 0 else f'{idx:05d}'}.{settings.image_format}"
        rel = f"crops/{_safe(dataset)}/{stem}-{tag}/{name}"
        save_image(out_dir / rel, crop)
        out_rows.append({
            **row, "path": rel, "frame": fstr, "source_path": str(src),
            "face_box": " ".join(f"{v:.1f}" for v in face.box),
            "face_score": f"{face.score:.4f}", "fta": "0",
        })
    return {"rows": out_rows, "failures": failures}


def _run_unit(args: tuple[dict[str, str], str, str, PrepareSettings]) -> tuple[str, dict]:
    row, src, out_dir, settings = args
    key = _unit_key(Path(src), row.get("frame", ""))
    return key, process_unit(row, Path(src), Path(out_dir), settings)


def _write_part(parts: Path, key: str, result: Mapping[str, Any]) -> None:
    tmp = parts / f"{key}.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, parts / f"{key}.json")


def prepare(
    manifest: str | Path,
    out_dir: str | Path,
    recipe: CropRecipe | None = None,
    frames: int | None = 10,
    image_format: str = "png",
    workers: int = 1,
    boxes: str = "detect",
    overwrite: bool = False,
    progress: bool = True,
    on_unit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Prepare face crops for every row of ``manifest`` into ``out_dir`` (resumable).

    Under torchrun (process group started, e.g. by ``vitfas data prepare``) each rank takes a
    contiguous share of the inputs still to do; every input's result is its own part file,
    so the merged manifest is the same, in the same order, as in one process. Rank 0 writes
    the merged files; ``out_dir`` must be visible to every rank (shared filesystem).

    Args:
        manifest: input manifest (videos and/or images).
        out_dir: output folder (created).
        recipe: crop recipe (detector, scale, size, colour order, pad).
        frames: frames sampled per video (``None``: all).
        image_format: ``png`` (lossless, default) or ``jpg``.
        workers: parallel processes (1: in this process).
        boxes: ``"detect"`` runs the detector on every frame (with detector ``none`` a
            row's ``face_box_rel`` is used when present); ``"manifest"`` uses each row's
            ``face_box_rel`` (``x0 y0 x1 y1`` fractions of the image, as written by the
            ``yolo`` and ``celeba-spoof`` layouts) and the detector only for rows without
            one (detector ``none``: the whole image).
        overwrite: start over when ``out_dir`` holds a run with other settings.
        progress: show a tqdm bar.
        on_unit: called with each finished unit's key (tests use it to interrupt).

    Returns:
        The summary: ``{"datasets": {name: counts}, "total": counts, "processed": n,
        "reused": n, "failures": [...], "manifest": path}``.
    """
    recipe = recipe or CropRecipe()
    if image_format not in ("png", "jpg"):
        raise BadConfigError(f"image format: expected png or jpg, got {image_format!r}")
    if frames is not None and frames < 1:
        raise BadConfigError(f"frames per video: expected >= 1, got {frames}")
    if boxes not in ("detect", "manifest"):
        raise BadConfigError(f"boxes: expected detect or manifest, got {boxes!r}")
    settings = PrepareSettings(recipe, frames, image_format, boxes)
    manifest = Path(manifest)
    rows = read_manifest(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = out / ".parts"
    cfg_file = out / "prepare.json"
    cfg = {**settings.to_dict(), "manifest": str(manifest.resolve())}
    if cfg_file.is_file():
        old = json.loads(cfg_file.read_text())
        if {k: old.get(k) for k in cfg} != cfg:
            if not overwrite:
                changed = "; ".join(f"{k}: {a!r} before, {b!r} now"
                                    for k, a, b in changed_settings(old, cfg))
                raise BadConfigError(
                    f"{cfg_file}: this folder was prepared with other settings ({changed}). "
                    f"Use another folder, or --overwrite to redo it")
            if get_rank() == 0:
                for p in parts.glob("*.json") if parts.is_dir() else []:
                    p.unlink()
    if get_rank() == 0:  # under torchrun: rank 0 sets the folder up, the others wait
        parts.mkdir(exist_ok=True)
        cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")
    barrier()

    units = []
    for r in rows:
        src = resolve_path(manifest, r)
        units.append((r, str(src), str(out), settings, _unit_key(src, r.get("frame", ""))))
    # rank 0's view of what is done, so that every rank shards the same list
    done = broadcast_object({p.stem for p in parts.glob("*.json")})
    all_todo = [u for u in units if u[4] not in done]
    todo = [all_todo[i] for i in shard_indices(len(all_todo))]  # all of it in one process
    reused = len(units) - len(all_todo)
    if reused:
        log.info("resuming: %d of %d inputs already prepared", reused, len(units))
    bar = tqdm(total=len(todo), desc="prepare", unit="input",
               disable=not progress or get_rank() != 0)
    try:
        if workers <= 1 or len(todo) <= 1:
            recipe.face_detector  # noqa: B018 - build once, fail early on a bad detector
            for r, src, od, st, key in todo:
                res = process_unit(r, Path(src), Path(od), st, recipe)
                _write_part(parts, key, res)
                bar.update(1)
                if on_unit:
                    on_unit(key)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                     initargs=(recipe.to_dict(),)) as ex:
                futs = [ex.submit(_run_unit, u[:4]) for u in todo]
                for fut in as_completed(futs):
                    key, res = fut.result()
                    _write_part(parts, key, res)
                    bar.update(1)
                    if on_unit:
                        on_unit(key)
    finally:
        bar.close()
    barrier()  # every rank's parts are written; each rank reads them all below
    missing = [u[4] for u in units if not (parts / f"{u[4]}.json").is_file()]
    if missing:
        raise BadDataError(
            f"{parts}: {len(missing)} prepared input(s) missing (first: {missing[0]}); under "
            "torchrun on several nodes the output folder must be on a shared filesystem")

    out_rows: list[dict[str, str]] = []
    out_manifest_path = out / "manifest.csv"
    failures: list[dict[str, str]] = []
    per: dict[str, dict[str, int]] = {}
    for r, _src, _od, _st, key in units:
        res = json.loads((parts / f"{key}.json").read_text())
        d = r.get("dataset", "") or "data"
        c = per.setdefault(d, {"inputs": 0, "crops": 0, "no_face_frames": 0,
                               "no_face_inputs": 0, "unreadable": 0})
        c["inputs"] += 1
        crops = [x for x in res["rows"] if x.get("fta") != "1"]
        c["crops"] += len(crops)
        nf = sum(1 for f in res["failures"] if f["reason"] == "no_face")
        c["no_face_frames"] += nf
        c["unreadable"] += sum(1 for f in res["failures"] if f["reason"] == "unreadable")
        if nf and not crops:
            c["no_face_inputs"] += 1
        for x in res["rows"]:
            # source paths (and FTA rows' paths) relative to the output manifest, like `path`
            x = {**x, "source_path": relative_to_manifest(x["source_path"], out_manifest_path)}
            if x.get("fta") == "1":
                x["path"] = x["source_path"]
            out_rows.append(x)
        failures.extend(res["failures"])
    out_manifest = out / "manifest.csv"
    if get_rank() == 0:
        out_manifest = write_manifest(out / "manifest.csv", out_rows)
        write_manifest_like(out / "failures.csv", failures, FAILURE_COLUMNS)
    total = {k: sum(c[k] for c in per.values()) for k in
             ("inputs", "crops", "no_face_frames", "no_face_inputs", "unreadable")}
    summary = {
        "manifest": str(out_manifest), "failures_csv": str(out / "failures.csv"),
        "datasets": per, "total": total, "processed": len(all_todo), "reused": reused,
        "recipe": recipe.to_dict(), "frames": frames,
        "failures": failures,
    }
    if get_rank() == 0:
        (out / "summary.json").write_text(json.dumps(
            {k: v for k, v in summary.items() if k != "failures"}, indent=2) + "\n")
    barrier()
    return summary


def write_manifest_like(path: Path, rows: Sequence[Mapping[str, str]],
                        columns: Sequence[str]) -> None:
    """Plain CSV with fixed columns (used for failures.csv)."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)



def recipe_of_manifest(manifest: str | Path) -> dict[str, Any]:
    """The crop recipe a manifest was made with by ``vitfas data prepare`` (its
    ``prepare.json`` beside the manifest), in the bundle's ``preprocessing`` names
    (``detector``, ``crop_scale``, ``crop_pad``, ``frames_per_video``); empty when there is
    no ``prepare.json``.

    Raises:
        BadDataError: ``prepare.json`` exists but cannot be read.
    """
    p = Path(manifest).parent / "prepare.json"
    if not p.is_file():
        return {}
    try:
        info = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadDataError(f"{p}: cannot read the prepare settings ({exc})") from exc
    recipe = info.get("recipe") or {}
    out: dict[str, Any] = {}
    if "detector" in recipe:
        out["detector"] = recipe["detector"]
    if "scale" in recipe:
        out["crop_scale"] = float(recipe["scale"])
    if "pad" in recipe:
        out["crop_pad"] = recipe["pad"]
    if info.get("frames"):
        out["frames_per_video"] = int(info["frames"])
    return out
