"""Build a labelled pretext set of *simulated* attacks from the live crops of a manifest.

For every live row (``fta`` 0) of the chosen splits, four images are written:

* ``live``: the real crop, unchanged (a row pointing at the original file, nothing copied);
* ``live_cam``: the crop re-photographed by the simulator's camera (``render_bona_fide``);
* ``print``: the crop printed as a CMY halftone and photographed (``print_attack``);
* ``replay``: the crop shown on a screen and photographed (``replay_attack``).

So each source face gives two live and two spoof images, and the simulator's camera
(noise, blur, exposure) is on one live and both spoof images: the medium, not the camera,
separates the classes. Spoof rows of the manifest are never read. The split of each output
row is its source row's split, so a pretext run can choose its epoch on a dev split made
from dev faces only. The manifest's test split must not be passed (the script refuses).

Usage (outputs go OUTSIDE the repository; the real crops must never be committed)::

    python benchmarks/real_fas/simulate_attacks.py /work/real_fas/intra/manifest.csv \
        /work/real_fas/sim/intra --size 64 --splits train dev
    vitfas train fas_scratch data.path=/work/real_fas/sim/intra/manifest.csv out=RUN

Writes ``OUT/images/<split>/<kind>/<n>.png`` and ``OUT/manifest.csv`` (path, label,
attack_type, split, source).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from vitfas.data.manifest import read_manifest, resolve_path, write_manifest
from vitfas.demo.simulate import (
    print_attack,
    render_bona_fide,
    replay_attack,
    to_float,
    to_uint8,
)

KINDS = ("live", "live_cam", "print", "replay")


def simulate_row(img: np.ndarray, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The three simulated images of one live crop.

    Args:
        img: uint8 RGB ``[H, W, 3]`` live face crop.
        size: side of the simulated images.
        rng: the random generator (camera, print and screen parameters are drawn from it).

    Returns:
        ``{"live_cam", "print", "replay"}`` -> uint8 RGB ``[size, size, 3]``.
    """
    src = to_float(img)
    return {
        "live_cam": to_uint8(render_bona_fide(src, size, rng)),
        "print": to_uint8(print_attack(src, size, rng)[0]),
        "replay": to_uint8(replay_attack(src, size, rng)[0]),
    }


def build(manifest: Path, out: Path, size: int = 64, splits: tuple[str, ...] = ("train", "dev"),
          seed: int = 0, limit: int = 0) -> tuple[Path, Counter[tuple[str, str]], list[str]]:
    """Write the simulated set; returns (its manifest, counts per (split, label), bad files)."""
    if "test" in splits:
        raise SystemExit("simulate_attacks: refusing to simulate from the test split")
    rows = [r for r in read_manifest(manifest)
            if r.get("label") == "live" and r.get("split") in splits
            and r.get("fta", "0") in ("", "0")]
    if limit:
        rows = rows[:limit]
    if not rows:
        raise SystemExit(f"{manifest}: no live rows with fta=0 in splits {list(splits)}")
    rng = np.random.default_rng(seed)
    out_rows: list[dict[str, str]] = []
    bad: list[str] = []
    for n, r in enumerate(rows):
        src_path = resolve_path(manifest, r)
        bgr = cv2.imread(str(src_path), cv2.IMREAD_COLOR)
        if bgr is None:
            bad.append(str(src_path))
            continue
        split = r["split"]
        out_rows.append({"path": os.path.relpath(src_path, out.resolve()), "label": "live",
                         "attack_type": "none", "split": split, "source": r["path"]})
        for kind, img in simulate_row(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, rng).items():
            dst = out / "images" / split / kind / f"{n:05d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            out_rows.append({"path": dst.relative_to(out).as_posix(),
                             "label": "live" if kind == "live_cam" else "spoof",
                             "attack_type": "none" if kind == "live_cam" else kind,
                             "split": split, "source": r["path"]})
    path = write_manifest(out / "manifest.csv", out_rows)
    counts = Counter((r["split"], r["label"]) for r in out_rows)
    return path, counts, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="a vitfas manifest of face crops")
    ap.add_argument("out", type=Path, help="output folder (outside the repository)")
    ap.add_argument("--size", type=int, default=64, help="side of the simulated images")
    ap.add_argument("--splits", nargs="+", default=["train", "dev"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="first N live rows only (0 = all)")
    a = ap.parse_args(argv)
    path, counts, bad = build(a.manifest, a.out, a.size, tuple(a.splits), a.seed, a.limit)
    print(f"wrote {path}: " + ", ".join(f"{s} {lab} {c}" for (s, lab), c in sorted(counts.items())))
    if bad:
        print(f"skipped {len(bad)} unreadable file(s): {bad[:5]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
