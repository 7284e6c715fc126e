"""``vitfas data {index, protocol, prepare}``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vitfas.data.layouts import ALIASES, LAYOUTS, index_dataset
from vitfas.data.manifest import read_manifest, rebase_rows, relative_to_manifest, summarize
from vitfas.data.manifest import write_manifest as _write
from vitfas.errors import BadDataError
from vitfas.faces import CropRecipe, list_detectors


def _first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line (whole sentences, never cut at a newline)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def register(subparsers: Any) -> None:
    """Add the ``data`` verb with its three sub-commands."""
    p = subparsers.add_parser("data", help="index datasets, build protocols, crop faces",
                              description="Dataset indexing, protocols and face cropping.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    ix = sub.add_parser("index", help="write a manifest for a dataset folder",
                        description="Walk a dataset folder and write a manifest CSV.",
                        epilog="layouts:\n  " + "\n  ".join(
                            f"{k}: {_first_paragraph(v.__doc__)}" for k, v in LAYOUTS.items())
                        + "\n\nyolo example (webcam frames with YOLO face boxes):\n"
                        "  vitfas data index --layout yolo Dataset --classes 0=spoof,1=live "
                        "-o cam.csv\n"
                        "  vitfas data index --layout yolo Dataset --label-from folder "
                        "-o cam.csv\n"
                        "  vitfas data prepare cam.csv -o crops --boxes manifest "
                        "--detector none\n"
                        "  (the largest box of each label file labels the image and becomes "
                        "its face_box_rel/face_box columns)")
    ix.add_argument("root", type=Path, help="dataset root folder")
    ix.add_argument("--layout", "-l", required=True, choices=[*LAYOUTS, *ALIASES],
                    metavar="LAYOUT", help=f"one of {', '.join(LAYOUTS)}")
    ix.add_argument("-o", "--output", type=Path, required=True, help="manifest CSV to write")
    ix.add_argument("--dataset", help="dataset name (folder/imagefolder; default: root name)")
    ix.add_argument("--protocol", type=int, help="OULU-NPU protocol 1-4")
    ix.add_argument("--fold", type=int, help="OULU-NPU protocol 3/4 fold 1-6")
    ix.add_argument("--classes", metavar="ID=CLASS,...",
                    help="yolo: class ids of the label files, e.g. 0=spoof,1=live (the "
                    "largest box's class labels the image)")
    ix.add_argument("--label-from", choices=["labels", "folder"], default=None,
                    help="yolo: take the label from the label files' class ids (labels, "
                    "needs --classes; default) or from the nearest live/real or spoof/fake "
                    "folder name (folder)")
    ix.add_argument("--check", choices=["none", "quick", "full"], default="quick",
                    help="file check: quick (non-empty, header opens; default), full (decode)")
    ix.add_argument("--json", action="store_true", help="machine-readable summary")
    ix.set_defaults(func=run_index)

    pr = sub.add_parser("protocol", help="build an evaluation protocol manifest")
    psub = pr.add_subparsers(dest="protocol_name", metavar="PROTOCOL")
    pr.set_defaults(func=lambda a: (pr.print_help(), 2)[1])
    oc = psub.add_parser("ocim", help="OCIM leave-one-out cross-domain protocol",
                         description="Train on three of OULU-NPU (O), CASIA-FASD (C), "
                         "Replay-Attack (I), MSU-MFSD (M); test on the fourth.")
    oc.add_argument("manifests", nargs="+", type=Path,
                    help="indexed (or prepared) manifests holding the four datasets")
    oc.add_argument("--target", required=True, choices=list("OCIM"), help="held-out dataset")
    oc.add_argument("--sources", help="source letters (default: the other three), e.g. OC")
    oc.add_argument("--celeba", action="store_true", help="add CelebA-Spoof as a source")
    oc.add_argument("--k-shot", type=int, default=0,
                    help="target videos per class moved into training")
    oc.add_argument("--seed", type=int, default=0, help="k-shot draw seed")
    oc.add_argument("--no-dev", action="store_true",
                    help="drop the sources' dev parts instead of using them as split dev")
    oc.add_argument("-o", "--output", type=Path, required=True)
    oc.add_argument("--json", action="store_true")
    oc.set_defaults(func=run_ocim)

    pp = sub.add_parser("prepare", help="sample frames, detect and crop faces",
                        description="Sample frames from videos, detect and crop faces, write "
                        "crops and a new manifest. Resumable: rerun the same command.")
    pp.add_argument("manifest", type=Path)
    pp.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    pp.add_argument("--frames", type=int, default=10, help="frames per video (default 10)")
    pp.add_argument("--all-frames", action="store_true", help="every frame of each video")
    pp.add_argument("--detector", default="default",
                    help=f"face detector: default, {', '.join(list_detectors())}")
    pp.add_argument("--boxes", choices=["detect", "manifest"], default="detect",
                    help="detect: run the detector on every frame (default); manifest: "
                    "use the rows' face boxes (face_box_rel, e.g. from --layout yolo or "
                    "celeba-spoof) and the detector only for rows without one")
    pp.add_argument("--scale", type=float, default=1.0,
                    help="crop side / face box side (1.0 OCIM, 1.3 CDCN, 2.7 Silent-Face)")
    pp.add_argument("--size", type=int, default=224, help="crop side in pixels")
    pp.add_argument("--pad", choices=["constant", "replicate"], default="constant")
    pp.add_argument("--format", choices=["png", "jpg"], default="png")
    pp.add_argument("--workers", type=int, default=1, help="parallel processes")
    pp.add_argument("--overwrite", action="store_true",
                    help="redo a folder prepared with other settings")
    pp.add_argument("--json", action="store_true")
    pp.set_defaults(func=run_prepare)


def _layout_key(name: str) -> str:
    """The canonical layout name of ``name`` (aliases resolved)."""
    return ALIASES.get(name.lower(), name.lower())


def _print_counts(rows: list[dict[str, str]]) -> None:
    for ds, splits in summarize(rows).items():
        for split, labels in splits.items():
            counts = ", ".join(f"{k} {v}" for k, v in sorted(labels.items()))
            print(f"  {ds:14s} {split:6s} {counts}")


def run_index(args: argparse.Namespace) -> int:
    opts: dict[str, Any] = {}
    if args.dataset:
        opts["dataset"] = args.dataset
    if args.protocol is not None or args.fold is not None:
        opts.update(protocol=args.protocol, fold=args.fold)
    skipped: list[str] = []
    if ALIASES.get(args.layout, args.layout) in ("folder", "imagefolder"):
        opts["skipped"] = skipped
    if args.classes is not None or args.label_from is not None:
        if _layout_key(args.layout) != "yolo":
            raise BadDataError(f"--classes/--label-from apply to --layout yolo, not "
                               f"{args.layout}")
        opts.update(classes=args.classes, label_from=args.label_from or "labels")
    rows = index_dataset(args.layout, args.root, check=args.check,
                         progress=not getattr(args, "quiet", False), **opts)
    out = args.output
    for r in rows:
        r["path"] = relative_to_manifest(r["path"], out)
    _write(out, rows)
    if args.json:
        print(json.dumps({"manifest": str(out), "rows": len(rows), "counts": summarize(rows),
                          "skipped": skipped}))
    else:
        print(f"wrote {out}: {len(rows)} rows")
        _print_counts(rows)
        if skipped:
            _print_listing(f"skipped {len(skipped)} file(s) that are neither images nor "
                           f"videos:", skipped, f"... and {len(skipped) - 20} more")
    return 0


def _print_listing(title: str, lines: list[str], more: str, limit: int = 20) -> None:
    print(title)
    for line in lines[:limit]:
        print(f"  {line}")
    if len(lines) > limit:
        print(f"  {more}")


def run_ocim(args: argparse.Namespace) -> int:
    from vitfas.data.protocols import ocim

    rows: list[dict[str, str]] = []
    for m in args.manifests:
        rows.extend(rebase_rows(read_manifest(m), m, args.output))
    out = ocim(rows, args.target, sources=list(args.sources) if args.sources else None,
               celeba=args.celeba, k_shot=args.k_shot, seed=args.seed,
               source_dev=not args.no_dev)
    _write(args.output, out)
    if args.json:
        print(json.dumps({"manifest": str(args.output), "rows": len(out),
                          "counts": summarize(out)}))
    else:
        print(f"wrote {args.output}: OCIM target {args.target}, {len(out)} rows")
        _print_counts(out)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from vitfas.data.prepare import prepare
    from vitfas.distributed import init_distributed

    info = init_distributed("cpu")  # under torchrun: the inputs are shared over the ranks
    recipe = CropRecipe(detector=args.detector, scale=args.scale, size=args.size,
                        pad=args.pad)
    s = prepare(args.manifest, args.output, recipe=recipe,
                frames=None if args.all_frames else args.frames, image_format=args.format,
                boxes=args.boxes,
                workers=args.workers, overwrite=args.overwrite,
                progress=not getattr(args, "quiet", False))
    if info.rank != 0:
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in s.items() if k != "failures"}
                         | {"failures": s["failures"][:1000]}))
    else:
        t = s["total"]
        print(f"wrote {s['manifest']}: {t['crops']} crops from {t['inputs']} inputs "
              f"({s['processed']} processed now, {s['reused']} from an earlier run)")
        print(f"  {'dataset':14s} {'inputs':>7s} {'crops':>7s} {'frames':>8s} {'inputs':>8s} "
              f"{'unreadable':>10s}")
        print(f"  {'':14s} {'':>7s} {'':>7s} {'no face':>8s} {'no face':>8s} {'inputs':>10s}")
        for d, c in s["datasets"].items():
            print(f"  {d:14s} {c['inputs']:7d} {c['crops']:7d} {c['no_face_frames']:8d} "
                  f"{c['no_face_inputs']:8d} {c['unreadable']:10d}")
        print("  (inputs: images and videos; no face: a failure to acquire, FTA, kept in the "
              "manifest with fta=1)")
        bad = [f for f in s["failures"] if f["reason"] == "unreadable"]
        if bad:
            _print_listing(f"skipped {len(bad)} unreadable file(s):",
                           [f["detail"] for f in bad], f"... see {s['failures_csv']}")
    return 0
