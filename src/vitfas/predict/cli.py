"""``vitfas predict BUNDLE PATH... [-o out.jsonl] [--explain DIR] [--strict]``.

One JSON line per input file (images, videos, folders walked recursively):

- image: ``{"path", "kind": "image", "status": "ok", "faces": [...], "score", "decision"}``
  where ``score``/``decision`` are the largest face's;
- video: ``{"path", "kind": "video", "status": "ok", "frames": [{"frame", "faces"}],
  "score": mean P(live) of each frame's largest face, "decision", "frames_sampled",
  "frames_with_face"}``;
- ``"status": "no_face"`` (failure to acquire) or ``"status": "error"`` with ``"error"``.

Each face: ``box`` [x0, y0, x1, y1] pixels, ``detector_score``, ``score`` (P(live)),
``decision`` at the bundle threshold, ``probs``. The run always goes on; the exit code is 1
only with ``--strict`` when any file failed or had no face. A PATH that does not exist is
a usage error (exit 2, nothing scored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vitfas.errors import VitfasError
from vitfas.predict.runtime import add_runtime_arguments


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="score faces in images, folders and videos with a model bundle",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", help="model bundle folder (a network or an LBP baseline bundle)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="images, videos or folders")
    p.add_argument("-o", "--output", help="write JSON lines here instead of stdout")
    p.add_argument("--explain", metavar="DIR", help="write attention overlays (PNG) here")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any file is unreadable or has no face")
    add_runtime_arguments(p)
    p.add_argument("--frames", type=int, default=None,
                   help="frames sampled uniformly from each video (default: the bundle's "
                   "frames_per_video: data prepare's --frames, else 8)")
    p.add_argument("--batch-size", type=int, default=32, help="most face crops per forward")
    p.set_defaults(func=run)


def _write_explanations(pred: Any, items: list[tuple[str, Any]], out_dir: Path,
                        rec: dict[str, Any]) -> None:
    """Write ``out_dir/NAME.png`` per ``(name, crop)``; a model that cannot be explained
    (e.g. no attention weights) gets ``explain_error`` in the record, the scores stand."""
    rec["explain"] = []
    try:
        for name, crop in items:
            f = out_dir / f"{name}.png"
            f.write_bytes(pred.explain_png(crop))
            rec["explain"].append(str(f))
    except Exception as exc:
        rec["explain_error"] = f"{type(exc).__name__}: {exc}"


def predict_one(pred: Any, path: Path, explain_dir: Path | None, index: int) -> dict[str, Any]:
    """The JSON record for one input file; never raises for bad input."""
    from vitfas.data.inputs import kind_of
    from vitfas.predict import load_image

    kind = kind_of(path)
    rec: dict[str, Any] = {"path": str(path), "kind": kind}
    try:
        if kind == "video":
            v = pred.predict_video(path)
            rec["frames"] = [
                {"frame": i, "faces": [r.to_dict() for r in res]} for i, res in v.frames
            ]
            rec.update(frames_sampled=v.frames_sampled, frames_with_face=v.frames_with_face)
            rec.update(score=v.score, decision=v.decision)
            rec["status"] = "ok" if v.score is not None else "no_face"
            if explain_dir is not None:
                items = [(f"{index:05d}_{path.stem}_frame{fi}_face{k}", crop)
                         for fi, crops in v.extra.get("crops", [])
                         for k, crop in enumerate(crops)]
                _write_explanations(pred, items, explain_dir, rec)
        else:
            dets = pred.detect(load_image(path))
            res = pred.predict_crops([dets])[0]
            rec["faces"] = [r.to_dict() for r in res]
            rec["score"] = res[0].score if res else None
            rec["decision"] = res[0].decision if res else None
            rec["status"] = "ok" if res else "no_face"
            if explain_dir is not None and res:
                items = [(f"{index:05d}_{path.stem}_face{k}", crop)
                         for k, (_, crop) in enumerate(dets)]
                _write_explanations(pred, items, explain_dir, rec)
        if rec["status"] == "no_face":
            rec["error"] = f"{path}: no face found (failure to acquire)"
    except VitfasError as exc:
        rec.update(status="error", error=str(exc))
    except Exception as exc:  # a batch job reports and goes on
        rec.update(status="error", error=f"{path}: {type(exc).__name__}: {exc}")
    return rec


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vitfas.data.inputs import expand_inputs, kind_of
    from vitfas.predict import load_predictor

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        for p in missing:
            print(f"vitfas predict: error: {p}: no such file or folder", file=sys.stderr)
        return 2
    pred = load_predictor(args.bundle, runtime=args.runtime, onnx_path=args.onnx,
                          batch_size=args.batch_size, detect_side=args.detect_side,
                          threads=args.threads)
    if args.frames:
        pred.frames_per_video = args.frames
    files = expand_inputs(args.paths)
    explain_dir = Path(args.explain) if args.explain else None
    if explain_dir is not None:
        explain_dir.mkdir(parents=True, exist_ok=True)
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    counts = {"ok": 0, "no_face": 0, "error": 0}
    decisions: dict[str, int] = {}
    try:
        for i, f in enumerate(tqdm(files, desc="predict", unit="file",
                                   disable=args.quiet or len(files) < 2, file=sys.stderr)):
            rec = predict_one(pred, f, explain_dir, i)
            counts[rec["status"]] += 1
            if rec.get("decision"):
                decisions[rec["decision"]] = decisions.get(rec["decision"], 0) + 1
            out.write(json.dumps(rec) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if not args.quiet:
        dec = ", ".join(f"{v} {k}" for k, v in sorted(decisions.items())) or "none"
        dest = f" -> {args.output}" if args.output else ""
        print(
            f"predict: {len(files)} files ({dec}); {counts['no_face']} without a face, "
            f"{counts['error']} unreadable; model {pred.model_id}, threshold "
            f"{pred.threshold:.4g} ({pred.threshold_source}), runtime {pred.runtime}{dest}",
            file=sys.stderr,
        )
    n_videos = sum(kind_of(f) == "video" for f in files)
    if n_videos and not args.quiet:
        print(f"predict: {n_videos} video(s) scored on {pred.frames_per_video} frames each "
              f"(mean P(live); --frames N to change)", file=sys.stderr)
    if args.strict and (counts["error"] or counts["no_face"]):
        return 1
    return 0
