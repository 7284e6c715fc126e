"""Data pipeline throughput and end-to-end ``predict`` latency on real photos.

- pipeline: images/s of decode (EXIF applied) + face detection + crop + training
  augmentation, i.e. what a ``DataLoader`` worker does per image, per detector;
- crops: images/s of decode + augmentation alone on already-cropped faces (the usual
  training input after ``vitfas data prepare``);
- predict: latency per photo of ``Predictor.predict_image`` (detect, crop, normalise,
  ViT forward, softmax) for a ViT-S/16 bundle at 224 px, p50/p95, torch and onnxruntime.

    python benchmarks/bench_pipeline.py [--photos DIR] [-o benchmarks/results/pipeline.json]

Photos default to ``../shared/fixtures/faces`` (real live/print/replay photos, 480x640 to
1617x2160).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def per_item(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> list[float]:
    """Seconds per call of ``fn(item)``, every item, ``rounds`` times."""
    times = []
    for _ in range(rounds):
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=20) if len(times) > 1 else [times[0]] * 19
    med = statistics.median(times)
    return {"per_s": 1.0 / med, "p50_ms": 1e3 * med, "p95_ms": 1e3 * q[18], "n": len(times)}


def bench_pipeline(photos: list[Path], rounds: int) -> dict[str, Any]:
    from vitfas.data.io import load_image
    from vitfas.data.transforms import build_transforms
    from vitfas.faces import CropRecipe

    aug = build_transforms(True, 224)
    out: dict[str, Any] = {}
    for det in ("dlib", "haar", "none"):
        recipe = CropRecipe(detector=det, scale=1.3, size=224)

        def one(p: Path, recipe: CropRecipe = recipe) -> None:
            faces = recipe.apply(load_image(p), max_faces=1)
            if faces:
                aug(faces[0][1])

        one(photos[0])  # load the detector once
        out[f"decode+detect+crop+augment ({det})"] = summary(per_item(one, photos, rounds))
    crops = []
    with tempfile.TemporaryDirectory() as d:
        from PIL import Image

        recipe = CropRecipe(detector="dlib", scale=1.3, size=224)
        for i, p in enumerate(photos):
            for j, (_face, crop) in enumerate(recipe.apply(load_image(p))):
                q = Path(d) / f"{i}_{j}.png"
                Image.fromarray(crop).save(q)
                crops.append(q)
        out["decode+augment (224 px crops)"] = summary(
            per_item(lambda q: aug(load_image(q)), crops, rounds * 4))
    return out


def bench_predict(photos: list[Path], rounds: int) -> dict[str, Any]:
    import vitfas
    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.export.onnx import export_onnx
    from vitfas.predict import Predictor

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        model = vitfas.create_model("vit_small_patch16_224", num_classes=2)
        pre = {"detector": "dlib", "crop_scale": 1.3, "img_size": [224, 224],
               "mean": [0.5] * 3, "std": [0.5] * 3, "colour_order": "RGB"}
        save_bundle(d, model, class_names=["spoof", "live"], live_index=1, preprocessing=pre,
                    threshold={"value": 0.5, "criterion": "fixed", "split": "none"})
        from vitfas.data.io import load_image

        images = [load_image(p) for p in photos]
        for runtime in ("torch", "onnx"):
            if runtime == "onnx":
                export_onnx(load_bundle(d), Path(d) / "model.onnx")
            pred = Predictor(load_bundle(d), runtime=runtime)
            pred.predict_image(images[0])
            with torch.inference_mode():
                out[f"predict per photo, ViT-S/16, {runtime}"] = summary(
                    per_item(pred.predict_image, images, rounds))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "fixtures" / "faces")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-predict", action="store_true")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    photos = sorted(q for q in args.photos.glob("*") if q.suffix.lower() in (".jpg", ".png"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 1
    res = {"photos": len(photos), "threads": args.threads, **bench_pipeline(photos, args.rounds)}
    if not args.skip_predict:
        res.update(bench_predict(photos, args.rounds))
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k:<48} {v['per_s']:8.1f} /s   p50 {v['p50_ms']:8.1f} ms   "
                  f"p95 {v['p95_ms']:8.1f} ms")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
