"""Compare the offline face detectors: recall / false positives on scikit-image's LFW
subset and face counts on the real fixtures. Prints the markdown tables of docs/data.md.

    PYTHONPATH=src python tools/bench_detectors.py [--fixtures ../shared/fixtures/faces]

``skimage.data.lfw_subset()`` ships inside scikit-image (no download): 200 25x25 grayscale
crops, the first 100 faces (LFW), the last 100 background patches. A 25 px tight face is
below every detector's window, so each patch is upscaled 4x (to 100 px, bicubic) and, in
the "context" protocol, padded by 50 px of mid-gray on each side (200 x 200) so the detector
sees a face with some margin as in a real frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from vitfas.data.io import load_image
from vitfas.faces import get_detector

BACKENDS = ["dlib", "haar", "lbp"]
EXPECTED = {"two_faces_live_and_replay.png": 2}


def lfw_images(context: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    x = skdata.lfw_subset()  # (200, 25, 25) float in [0, 1]
    imgs = []
    for a in x:
        g = cv2.resize((a * 255).round().astype(np.uint8), (100, 100),
                       interpolation=cv2.INTER_CUBIC)
        if context:
            g = cv2.copyMakeBorder(g, 50, 50, 50, 50, cv2.BORDER_CONSTANT, value=128)
        imgs.append(np.repeat(g[:, :, None], 3, axis=2))
    return imgs[:100], imgs[100:]


def bench_lfw(name: str, context: bool) -> dict[str, float]:
    det = get_detector(name)
    faces, background = lfw_images(context)
    t = time.perf_counter()
    hits = sum(1 for im in faces if det.detect(im))
    fp_imgs = 0
    fp_boxes = 0
    for im in background:
        n = len(det.detect(im))
        fp_imgs += n > 0
        fp_boxes += n
    ms = (time.perf_counter() - t) / 200 * 1000
    return {"recall": hits / 100, "fp_images": fp_imgs / 100, "fp_boxes": fp_boxes, "ms": ms}


def bench_fixtures(name: str, folder: Path) -> tuple[dict[str, int], float]:
    det = get_detector(name)
    counts = {}
    total = 0.0
    for f in sorted(folder.glob("*")):
        if f.suffix.lower() not in (".jpg", ".png"):
            continue
        rgb = load_image(f)
        t = time.perf_counter()
        counts[f.name] = len(det.detect(rgb))
        total += time.perf_counter() - t
    return counts, total / max(len(counts), 1) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("VITFAS_SHARED", Path(__file__).resolve().parents[1].parent
                                  / "shared")) / "fixtures" / "faces"
    ap.add_argument("--fixtures", type=Path, default=default)
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)

    print("### LFW subset (skimage.data.lfw_subset: 100 faces, 100 background patches)\n")
    print("| detector | protocol | recall (faces found) | background patches with a detection "
          "| false boxes | ms / image |")
    print("|---|---|---|---|---|---|")
    for name in BACKENDS:
        for context in (False, True):
            r = bench_lfw(name, context)
            proto = "100 px + 50 px gray margin" if context else "100 px, no margin"
            print(f"| {name} | {proto} | {r['recall']:.2f} | {r['fp_images']:.2f} | "
                  f"{r['fp_boxes']} | {r['ms']:.1f} |")
    if not args.fixtures.is_dir():
        print(f"\n(fixtures not found at {args.fixtures}; skipped)", file=sys.stderr)
        return 0
    print("\n### Real photos (shared/fixtures/faces; faces found, expected in brackets)\n")
    res = {n: bench_fixtures(n, args.fixtures) for n in BACKENDS}
    files = list(res[BACKENDS[0]][0])
    print("| image | " + " | ".join(BACKENDS) + " |")
    print("|---|" + "---|" * len(BACKENDS))
    for f in files:
        exp = EXPECTED.get(f, 1)
        cells = [f"{res[n][0][f]}" + ("" if res[n][0][f] == exp else " ✗") for n in BACKENDS]
        print(f"| {f} ({exp}) | " + " | ".join(cells) + " |")
    correct = {n: sum(res[n][0][f] == EXPECTED.get(f, 1) for f in files) for n in BACKENDS}
    print("| **exact count** | " + " | ".join(f"{correct[n]}/{len(files)}" for n in BACKENDS)
          + " |")
    print("| ms / image | " + " | ".join(f"{res[n][1]:.0f}" for n in BACKENDS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
