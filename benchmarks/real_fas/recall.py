"""Face detector recall on the real webcam frames, against their YOLO face boxes.

    python benchmarks/real_fas/recall.py --out /work/real_fas [--sample 500] [--seed 0]

Reads the de-duplicated webcam rows of ``OUT/index/*.all.csv`` (built by ``run.py``), draws
``--sample`` frames (stratified by repository and label, ``random.Random(seed)``; 0: all)
and runs every detector vitfas has on each whole frame. A frame counts as found when
*some* detection has IoU >= 0.5 with the labelled box (recall, any face) and, stricter,
when the *largest* detection does (what ``vitfas data prepare`` keeps). Also reports the
median IoU of the best detection, the frames with no detection at all and seconds per
frame. Results go to stdout (Markdown) and ``OUT/recall.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from repos import REPOS  # noqa: E402

from vitfas.data.io import load_image  # noqa: E402
from vitfas.data.manifest import read_manifest, resolve_path  # noqa: E402
from vitfas.errors import BadImageError  # noqa: E402
from vitfas.faces import get_detector, list_detectors  # noqa: E402


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sample_rows(out: Path, n: int, seed: int) -> list[tuple[Path, tuple[float, ...], str]]:
    strata: dict[tuple[str, str], list[tuple[Path, tuple[float, ...], str]]] = {}
    total = 0
    for repo in REPOS:
        if repo.kind != "webcam":
            continue
        man = out / "index" / f"{repo.dataset}.all.csv"
        for r in read_manifest(man):
            if not r.get("face_box"):
                continue
            box = tuple(float(v) for v in r["face_box"].split())
            strata.setdefault((repo.dataset, r["label"]), []).append(
                (resolve_path(man, r), box, repo.dataset))
            total += 1
    rng = random.Random(seed)
    picked = []
    for k in sorted(strata):
        items = strata[k]
        m = len(items) if n <= 0 else max(1, round(n * len(items) / total))
        picked += rng.sample(items, min(m, len(items)))
    return picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the folder run.py built")
    ap.add_argument("--sample", type=int, default=500, help="frames drawn (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detectors", default=",".join(d for d in list_detectors() if d != "none"))
    ap.add_argument("--json", type=Path, help="results file (default OUT/recall.json)")
    args = ap.parse_args(argv)
    rows = sample_rows(args.out, args.sample, args.seed)
    images = []
    for path, box, ds in rows:
        try:
            images.append((load_image(path), box, ds))
        except BadImageError as exc:
            print(f"skipped unreadable {exc}", file=sys.stderr)
    res: dict[str, dict[str, float]] = {}
    for name in args.detectors.split(","):
        det = get_detector(name)
        any_hit = largest_hit = none = 0
        best: list[float] = []
        t0 = time.perf_counter()
        for rgb, box, _ in images:
            faces = det.detect(rgb)
            if not faces:
                none += 1
                best.append(0.0)
                continue
            ious = [iou(f.box, box) for f in faces]
            best.append(max(ious))
            any_hit += max(ious) >= 0.5
            largest_hit += ious[0] >= 0.5  # detect() returns the largest first
        n = len(images)
        res[name] = {"frames": n, "recall_any": any_hit / n, "recall_largest": largest_hit / n,
                     "no_detection": none / n, "median_best_iou": statistics.median(best),
                     "s_per_frame": (time.perf_counter() - t0) / n}
        print(f"{name}: {res[name]}", file=sys.stderr, flush=True)
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}"
    lines = [f"{len(images)} webcam frames (640x480) from {len({d for *_, d in images})} "
             f"repositories, seed {args.seed}; machine: {machine}", "",
             "| detector | recall (any face, IoU >= 0.5) | recall (largest face) | "
             "no detection | median best IoU | s / frame |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        lines.append(f"| {name} | {100 * r['recall_any']:.1f}% | "
                     f"{100 * r['recall_largest']:.1f}% | {100 * r['no_detection']:.1f}% | "
                     f"{r['median_best_iou']:.2f} | {r['s_per_frame']:.3f} |")
    payload = {"frames": len(images), "seed": args.seed, "results": res}
    (args.json or args.out / "recall.json").write_text(json.dumps(payload, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
