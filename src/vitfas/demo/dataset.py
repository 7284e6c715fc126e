"""The demo's face anti-spoofing set, built from real photographs that ship with
scikit-image, with **simulated** attacks (:mod:`vitfas.demo.simulate`).

Bona fide sources (all offline, inside the scikit-image wheel):

* the 100 face crops of ``skimage.data.lfw_subset()`` (Labeled Faces in the Wild, 25 x 25
  grayscale; the first 100 of its 200 images are faces, the rest non-faces and unused).
  LFW names are not shipped with the subset, so **each crop is assumed to be its own
  subject**; LFW holds several photos of some people, so a few crops may show the same
  person (splits are then disjoint by photo, not guaranteed by identity).
* ``skimage.data.astronaut()`` (Eileen Collins; colour), cropped around the face;
* ``skimage.data.coffee()`` (a cup of coffee, not a face: a colour bona fide *object*, as
  the issue asks), centre-cropped to a square.

Every source is one subject. Each subject gets ``live`` captures (the source in front of
the camera), ``print`` attacks and ``replay`` attacks; all images of a subject go to the
same split, so no photo appears in two splits (subject-disjoint). ``astronaut`` is pinned
to ``test`` (a colour face to show at the end), ``coffee`` to ``train``.

Output: ``DIR/{split}/{live,print,replay}/{subject}_{k}.png`` and ``DIR/manifest.csv``
(vitfas manifest: ``label`` live/spoof, ``attack_type`` none/print/replay, ``dataset``
``demo``, extra columns ``source`` and ``simulated``), plus ``DIR/README.md``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitfas.demo.simulate import (
    params_dict,
    print_attack,
    render_bona_fide,
    replay_attack,
    to_uint8,
)

log = logging.getLogger(__name__)

__all__ = ["ASTRONAUT_FACE_BOX", "DemoSource", "assign_splits", "build_demo_set",
           "demo_sources"]

#: The face in ``skimage.data.astronaut()`` as dlib finds it (x0, y0, x1, y1), fixed here
#: so the data do not depend on a detector.
ASTRONAUT_FACE_BOX = (179.0, 83.0, 267.0, 171.0)
#: Crop side relative to a dlib face box that matches the framing of the LFW subset crops
#: (dlib's box is 0.85 of an LFW crop's side on average, measured on the 100 crops).
LFW_CROP_SCALE = 1.18
KINDS = ("live", "print", "replay")
SIMULATION_NOTE = (
    "The attacks in this data set are SIMULATED: print and screen-replay recaptures are "
    "rendered from the bona fide photos by vitfas.demo.simulate (halftone, paper tone, "
    "reduced gamut and blur for print; pixel-grid moire, gamma, glare and bezel for "
    "replay). No real attack was recorded. Figures measured on it show that the pipeline "
    "works, not how a model performs against real attacks."
)


@dataclass
class DemoSource:
    """One bona fide photograph. ``image``: float ``[H, W]`` or ``[H, W, 3]`` in [0, 1]."""

    subject: str
    image: np.ndarray
    origin: str


def demo_sources(n_lfw: int | None = None) -> list[DemoSource]:
    """The bona fide photographs: LFW crops (``n_lfw`` of them, all 100 by default), the
    astronaut's face and the coffee cup."""
    import skimage.data

    from vitfas.faces import crop_square

    lfw = skimage.data.lfw_subset()[:100]
    n = 100 if n_lfw is None else max(0, min(int(n_lfw), 100))
    out = [DemoSource(f"lfw{i:03d}", lfw[i].astype(np.float64),
                      f"skimage.data.lfw_subset()[{i}]") for i in range(n)]
    astro = crop_square(skimage.data.astronaut(), ASTRONAUT_FACE_BOX, LFW_CROP_SCALE, None)
    out.append(DemoSource("astronaut", astro.astype(np.float64) / 255.0,
                          "skimage.data.astronaut(), face crop"))
    coffee = skimage.data.coffee()  # 400 x 600
    h, w = coffee.shape[:2]
    s = min(h, w)
    x0 = (w - s) // 2
    out.append(DemoSource("coffee", coffee[:s, x0:x0 + s].astype(np.float64) / 255.0,
                          "skimage.data.coffee(), centre square"))
    return out


def assign_splits(
    subjects: list[str],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    pinned: dict[str, str] | None = None,
) -> dict[str, str]:
    """Subject -> split (``train``/``dev``/``test``), a seeded shuffle cut by ``fractions``;
    ``pinned`` subjects keep their given split. Each split gets at least one subject when
    there are three or more free subjects."""
    pinned = {"astronaut": "test", "coffee": "train"} if pinned is None else pinned
    free = [s for s in subjects if s not in pinned]
    order = np.random.default_rng(seed).permutation(len(free))
    n = len(free)
    n_dev = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if n >= 3:
        n_dev, n_test = max(1, n_dev), max(1, n_test)
    out = {s: pinned[s] for s in subjects if s in pinned}
    for rank, i in enumerate(order):
        split = "dev" if rank < n_dev else "test" if rank < n_dev + n_test else "train"
        out[free[i]] = split
    return out


def _rng(seed: int, subject_index: int, kind: int, k: int) -> np.random.Generator:
    return np.random.default_rng([seed, subject_index, kind, k])


def build_demo_set(
    out_dir: str | Path,
    size: int = 64,
    live: int = 2,
    prints: int = 1,
    replays: int = 1,
    seed: int = 0,
    n_lfw: int | None = None,
    progress: bool = True,
) -> Path:
    """Render the demo set into ``out_dir`` and return its ``manifest.csv``.

    Args:
        size: image side in pixels.
        live, prints, replays: captures per subject of each kind.
        seed: everything (splits, simulation parameters, camera) follows from it.
        n_lfw: how many LFW crops to use (all 100 by default; fewer for quick tests).
    """
    from tqdm import tqdm

    from vitfas.data.io import save_image
    from vitfas.data.manifest import write_manifest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = demo_sources(n_lfw)
    splits = assign_splits([s.subject for s in sources], seed)
    counts = {"live": live, "print": prints, "replay": replays}
    jobs = [(si, src, kind, k) for si, src in enumerate(sources)
            for kind in KINDS for k in range(counts[kind])]
    rows: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    for si, src, kind, k in tqdm(jobs, desc="demo data", unit="img", disable=not progress):
        rng = _rng(seed, si, KINDS.index(kind), k)
        if kind == "live":
            img, p = render_bona_fide(src.image, size, rng), None
        elif kind == "print":
            img, p = print_attack(src.image, size, rng)
        else:
            img, p = replay_attack(src.image, size, rng)
        split = splits[src.subject]
        rel = Path(split) / kind / f"{src.subject}_{k}.png"
        save_image(out / rel, to_uint8(img))
        rows.append({
            "path": rel.as_posix(),
            "label": "live" if kind == "live" else "spoof",
            "attack_type": "none" if kind == "live" else kind,
            "dataset": "demo",
            "subject": src.subject,
            "video": "",
            "frame": "",
            "split": split,
            "source": src.origin,
            "simulated": 0 if kind == "live" else 1,
        })
        if p is not None:
            params.append({"path": rel.as_posix(), "attack_type": kind, **params_dict(p)})
    manifest = write_manifest(out / "manifest.csv", rows)
    (out / "simulation.jsonl").write_text("".join(json.dumps(p) + "\n" for p in params))
    table = Counter((r["split"], r["attack_type"]) for r in rows)
    n_subj = Counter(splits.values())
    lines = [
        "# vitfas demo data", "",
        f"**{SIMULATION_NOTE}**", "",
        "Bona fide sources: the 100 face crops of `skimage.data.lfw_subset()` (each assumed "
        "to be its own subject; the subset ships without names), `skimage.data.astronaut()` "
        "(face crop) and `skimage.data.coffee()` (an object, not a face). Splits are "
        "disjoint by subject: every image made from a photo is in that photo's split.", "",
        f"Images: {size} x {size} PNG; per subject {live} live, {prints} print, {replays} "
        f"replay. Seed {seed}. Attack parameters per image: `simulation.jsonl`.", "",
        "| split | subjects | live | print | replay |", "|---|---|---|---|---|",
    ]
    for split in ("train", "dev", "test"):
        lines.append(f"| {split} | {n_subj[split]} | {table[(split, 'none')]} | "
                     f"{table[(split, 'print')]} | {table[(split, 'replay')]} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    log.info("demo data: %d images of %d subjects in %s", len(rows), len(sources), out)
    return manifest
