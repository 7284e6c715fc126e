"""The unlabelled image pool for MAE pre-training on a real_fas protocol, without its test set.

The pool is: the protocol manifest's train and dev rows (``fta`` 0), plus every face crop
under ``CROPS/<owner>/`` whose repository owner has no row in the protocol's test split.
Crops of a test repository that are not train/dev rows are left out (they may share a
subject or a video with a test image), and so is any file byte-identical (SHA-256) to a
test crop. Labels are not written.

Usage (outputs go OUTSIDE the repository; never commit a pool)::

    python benchmarks/real_fas/mae_pool.py /work/real_fas/intra/manifest.csv \
        /work/real_fas/crops /work/real_fas/mae_pool/intra.csv
    OMP_NUM_THREADS=1 vitfas pretrain-mae pretrain_mae_fas_scratch \
        data.source=/work/real_fas/mae_pool/intra.csv out=RUN

Prints the pool's size and where it came from.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
from pathlib import Path

from vitfas.data.manifest import read_manifest, resolve_path, write_manifest

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_pool(manifest: Path, crops: Path) -> tuple[list[Path], Counter[str]]:
    """The pool's files (absolute, de-duplicated) and a count per source."""
    rows = read_manifest(manifest)
    test = [r for r in rows if r.get("split") == "test"]
    test_owners = {r["repo"].split("/")[0] for r in test if r.get("repo")}
    test_sha = {_sha(p) for p in (resolve_path(manifest, r) for r in test) if p.is_file()}
    seen: set[str] = set()
    pool: list[Path] = []
    counts: Counter[str] = Counter()

    def add(p: Path, source: str) -> None:
        h = _sha(p)
        if h in test_sha:
            counts["dropped: identical to a test crop"] += 1
        elif h not in seen:
            seen.add(h)
            pool.append(p)
            counts[source] += 1

    for r in rows:
        if r.get("split") in ("train", "dev") and r.get("fta", "0") in ("", "0"):
            p = resolve_path(manifest, r)
            if p.is_file():
                add(p, f"manifest {r['split']}")
    for owner_dir in sorted(d for d in crops.iterdir() if d.is_dir()):
        if owner_dir.name in test_owners:
            continue
        for p in sorted(owner_dir.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTS and p.is_file():
                add(p.resolve(), f"crops/{owner_dir.name}")
    return pool, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="the protocol's manifest")
    ap.add_argument("crops", type=Path, help="the folder of all face crops (CROPS/<owner>/...)")
    ap.add_argument("out", type=Path, help="pool manifest to write (outside the repository)")
    a = ap.parse_args(argv)
    pool, counts = build_pool(a.manifest, a.crops)
    write_manifest(a.out, [{"path": str(p), "label": "", "split": "pool"} for p in pool])
    print(f"wrote {a.out}: {len(pool)} images")
    for k, v in sorted(counts.items()):
        print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
