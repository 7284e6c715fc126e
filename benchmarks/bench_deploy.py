"""Deployment speed and accuracy on a CPU: fp32 / bf16 PyTorch, fp32 / int8 onnxruntime.

Parts (each optional):

- ``latency``: batch-1 model latency (p50/p95 ms) of ViT-Ti/S/B-16 at 224 px in five
  runtimes -- torch fp32, torch bf16 autocast, onnxruntime fp32, onnxruntime int8 dynamic,
  onnxruntime int8 static in QDQ and in QOperator format (calibrated on random images:
  calibration data does not change the speed) -- alternating round by round (order
  reversed every other round);
  speed-ups are torch fp32 / runtime, as the median of the per-round ratios;
- ``e2e``: ``Predictor.predict_image`` per photo (detect + crop + normalise + model) on the
  real photos of ``../shared/fixtures/faces``, ViT-S/16, default face detection vs the fast
  face stage (``detect_side``), same alternation;
- ``recall``: face detector recall, default vs fast, on the fixtures (every face the default
  detector finds there, 8 faces, checked by eye) and on webcam frames with ground-truth face
  boxes (index CSVs with a ``face_box`` column, e.g. the real development set's webcam sets);
  a ground-truth box counts as found when a detection overlaps it with IoU >= 0.3 (the
  YOLO-style labels include forehead and hair, dlib's box does not: the median IoU of a
  correct detection is about 0.47), IoU >= 0.5 reported too;
- ``accuracy``: for each ``--accuracy BUNDLE=MANIFEST`` (a trained bundle and its protocol
  manifest), the dev and test rows scored by every runtime: AUC, EER, HTER at the bundle's
  threshold (chosen on dev at training time, applied unchanged), and against torch fp32 the
  largest |dP(live)| and the share of identical decisions. Static int8 is calibrated on
  128 rows of the manifest's train split. The bundle folder is copied, never written.

    python benchmarks/bench_deploy.py --parts latency,e2e,recall --sizes Ti,S,B \\
        --frames /work/real_fas/index/SoorajOfficial2023.csv \\
        --accuracy /work/real_fas/runs/intra/vit/train/bundle=/work/real_fas/intra/manifest.csv \\
        -o benchmarks/results/deploy.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = {"Ti": "vit_tiny_patch16_224", "S": "vit_small_patch16_224",
         "B": "vit_base_patch16_224"}
PRE = {"detector": "dlib", "crop_scale": 1.3, "img_size": [224, 224], "mean": [0.5] * 3,
       "std": [0.5] * 3, "colour_order": "RGB"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pctl(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times), q))


def alternate(fns: dict[str, Callable[[Any], Any]], items: list[Any], rounds: int,
              iters: int) -> dict[str, Any]:
    """Time ``fn(item)`` for every item, ``iters`` times, per function; functions alternate
    round by round (reversed order every other round). Returns per function the seconds of
    every call and per round the median."""
    calls: dict[str, list[float]] = {k: [] for k in fns}
    per_round: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for k in order:
            ts = []
            for _ in range(iters):
                for it in items:
                    t0 = time.perf_counter()
                    fns[k](it)
                    ts.append(time.perf_counter() - t0)
            calls[k] += ts
            per_round[k].append(statistics.median(ts))
        log(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {1e3 * per_round[k][-1]:.1f}" for k in fns) + " ms")
    return {"calls": calls, "per_round": per_round}


def summarise(t: dict[str, Any], ref: str) -> dict[str, Any]:
    out = {}
    for k, ts in t["calls"].items():
        ratios = [a / b for a, b in zip(t["per_round"][ref], t["per_round"][k])]
        out[k] = {"p50_ms": 1e3 * pctl(ts, 50), "p95_ms": 1e3 * pctl(ts, 95), "n": len(ts),
                  "speedup_vs_" + ref.replace(" ", "_"): statistics.median(ratios),
                  "p50_ratio": pctl(t["calls"][ref], 50) / pctl(ts, 50)}
    return out


def make_bundle(d: Path, name: str, seed: int = 0) -> Any:
    import vitfas
    from vitfas.bundle import load_bundle, save_bundle

    torch.manual_seed(seed)
    model = vitfas.create_model(name, num_classes=2)
    save_bundle(d, model, class_names=["spoof", "live"], live_index=1, preprocessing=PRE,
                threshold={"value": 0.5, "criterion": "fixed", "split": "none"})
    return load_bundle(d)


def prepare_graphs(bundle: Any, calibrate: Any) -> dict[str, Path]:
    """fp32, int8 dynamic and int8 static graphs beside the bundle's weights."""
    from vitfas.export.onnx import export_onnx
    from vitfas.export.quantize import quantize_int8

    d = bundle.path
    export_onnx(bundle, d / "model.onnx")
    rep_d = quantize_int8(bundle, d / "model.onnx", d / "model.int8.dynamic.onnx")
    rep_s = quantize_int8(bundle, d / "model.onnx", d / "model.int8.static.onnx", calibrate)
    rep_q = quantize_int8(bundle, d / "model.onnx", d / "model.int8.static_qop.onnx",
                          calibrate, static_format="qoperator")
    log(f"  int8 dynamic: {rep_d['check']}")
    log(f"  int8 static: {rep_s['check']}")
    log(f"  int8 static, QOperator format: {rep_q['check']}")
    return {"fp32": d / "model.onnx", "dynamic": d / "model.int8.dynamic.onnx",
            "static": d / "model.int8.static.onnx",
            "static_qop": d / "model.int8.static_qop.onnx", "check_dynamic": rep_d["check"],
            "check_static": rep_s["check"], "check_static_qop": rep_q["check"]}


def runtimes(bundle: Any, graphs: dict[str, Any], threads: int, bf16: bool) -> dict[str, Any]:
    from vitfas.predict.runtime import onnx_runtime, torch_runtime

    rts = {"torch fp32": torch_runtime(bundle.model)}
    if bf16:
        rts["torch bf16"] = torch_runtime(bundle.model, bf16=True)
    rts["ort fp32"] = onnx_runtime(graphs["fp32"], threads)
    rts["ort int8 dynamic"] = onnx_runtime(graphs["dynamic"], threads)
    rts["ort int8 static"] = onnx_runtime(graphs["static"], threads)
    rts["ort int8 static qoperator"] = onnx_runtime(graphs["static_qop"], threads)
    return rts


# --------------------------------------------------------------------------- parts
def bench_latency(sizes: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from vitfas.export.quantize import random_batches

    out: dict[str, Any] = {}
    for size in sizes:
        log(f"latency {size}: export and quantize")
        b = make_bundle(tmp / f"lat_{size}", SIZES[size])
        graphs = prepare_graphs(b, random_batches(b, 16, seed=1))
        rts = runtimes(b, graphs, args.threads, not args.no_bf16)
        x = random_batches(b, 1, seed=2)[0]
        for rt in rts.values():
            for _ in range(args.warmup):
                rt(x)
        t = alternate(dict(rts), [x], args.rounds, args.iters)
        out[size] = summarise(t, "torch fp32")
        for k, v in out[size].items():
            log(f"  {size} {k:18s} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  "
                f"speed-up {v['speedup_vs_torch_fp32']:.2f}x")
    return out


def fixture_photos(folder: Path) -> list[Path]:
    return sorted(q for q in folder.glob("*") if q.suffix.lower() in (".jpg", ".png"))


def bench_e2e(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from vitfas.data.io import load_image
    from vitfas.export.quantize import random_batches
    from vitfas.predict import Predictor

    photos = fixture_photos(args.photos)
    images = [load_image(p) for p in photos]
    log(f"e2e: ViT-S/16 on {len(images)} photos: export and quantize")
    b = make_bundle(tmp / "e2e_S", SIZES["S"])
    graphs = prepare_graphs(b, random_batches(b, 16, seed=1))
    side = args.detect_side
    preds = {
        "torch fp32": Predictor(b, "torch"),
        "ort fp32": Predictor(b, "onnx", threads=args.threads),
        "ort int8 static": Predictor(b, "onnx-int8", graphs["static"], threads=args.threads),
        f"torch fp32 + detect {side}": Predictor(b, "torch", detect_side=side),
        f"ort int8 dynamic + detect {side}": Predictor(b, "onnx-int8", graphs["dynamic"],
                                                      detect_side=side, threads=args.threads),
        f"ort int8 static + detect {side}": Predictor(b, "onnx-int8", graphs["static"],
                                                     detect_side=side, threads=args.threads),
    }
    fns: dict[str, Callable[[Any], Any]] = {k: p.predict_image for k, p in preds.items()}
    fns["detect only, default"] = preds["torch fp32"].detect
    fns[f"detect only, side {side}"] = preds[f"torch fp32 + detect {side}"].detect
    for f in fns.values():
        f(images[0])
    t = alternate(fns, images, args.rounds, 1)
    res = summarise(t, "torch fp32")
    for k, v in res.items():
        log(f"  e2e {k:34s} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  "
            f"speed-up {v['speedup_vs_torch_fp32']:.2f}x")
    return {"photos": [p.name for p in photos], "detect_side": side, **res}


def iou(a: Any, b: Any) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recall_on(images: list[np.ndarray], truths: list[list[tuple[float, ...]]],
              detectors: dict[str, Any]) -> dict[str, Any]:
    """Recall of every detector against ground-truth boxes, and its CPU time per image."""
    out = {}
    n_true = sum(len(t) for t in truths)
    for name, det in detectors.items():
        best: list[float] = []
        cpu = 0.0
        for im, gts in zip(images, truths):
            t0 = time.process_time()
            faces = det.detect(im)
            cpu += time.process_time() - t0
            best += [max([iou(g, f.box) for f in faces], default=0.0) for g in gts]
        v = np.asarray(best)
        out[name] = {"faces": n_true, "recall_iou30": float((v >= 0.3).mean()),
                     "recall_iou50": float((v >= 0.5).mean()),
                     "median_iou": float(np.median(v)),
                     "cpu_ms_per_image": 1e3 * cpu / max(1, len(images))}
    return out


def recall_detectors(side: int, extra_sides: list[int]) -> dict[str, Any]:
    """The detectors the recall part compares, all dlib: the default, the fast face stage
    (:func:`vitfas.faces.fast_detector`: grey HOG on a ``side`` copy, full default pass
    where it finds no face) and the candidates it was chosen from."""
    from vitfas.faces import FallbackDetector, fast_detector, fast_detector_options, get_detector

    default = get_detector("dlib")
    colour = get_detector("dlib", max_side=side, upsample=0)
    dets = {"default": default,
            f"fast {side} (grey + fallback)": fast_detector("dlib", side),
            f"grey {side}, no fallback": fast_detector("dlib", side, fallback=False),
            f"colour {side}": colour,
            f"colour {side} + fallback": FallbackDetector(colour, default)}
    for s in extra_sides:
        dets[f"grey {s}, no fallback"] = get_detector("dlib", **fast_detector_options("dlib", s))
        dets[f"fast {s} (grey + fallback)"] = fast_detector("dlib", s)
    return dets


def bench_recall(args: argparse.Namespace) -> dict[str, Any]:
    from vitfas.data.io import load_image

    dets = recall_detectors(args.detect_side, args.extra_sides)
    res: dict[str, Any] = {}
    photos = fixture_photos(args.photos)
    if photos:
        images = [load_image(p) for p in photos]
        # the fixtures' faces: every face the default detector finds (8, checked by eye)
        truths = [[f.box for f in dets["default"].detect(im)] for im in images]
        res["fixtures"] = recall_on(images, truths, dets)
        log(f"recall fixtures: {json.dumps(res['fixtures'])}")
    for index in args.frames:
        index = Path(index)
        with open(index, newline="") as fh:
            rows = [r for r in csv.DictReader(fh)
                    if (r.get("face_box") or "").strip() and r.get("n_boxes", "1") == "1"]
        if not rows:
            log(f"{index}: no rows with one face_box, skipped")
            continue
        rows = rows[:: max(1, len(rows) // args.frames_per_set)][: args.frames_per_set]
        images, truths = [], []
        for r in rows:
            try:
                images.append(load_image((index.parent / r["path"]).resolve()))
            except Exception as exc:  # a bad frame is reported, the set goes on
                log(f"  {r['path']}: {exc}")
                continue
            truths.append([tuple(float(v) for v in r["face_box"].split())])
        res[index.stem] = recall_on(images, truths, dets)
        log(f"recall {index.stem} ({len(images)} frames): {json.dumps(res[index.stem])}")
    sets = [k for k in res if k != "fixtures"]
    if sets:  # all webcam frames together
        all_ = {}
        for name in dets:
            n = sum(res[k][name]["faces"] for k in sets)
            all_[name] = {"faces": n, **{m: sum(res[k][name][m] * res[k][name]["faces"]
                                                for k in sets) / n
                                         for m in ("recall_iou30", "recall_iou50",
                                                   "cpu_ms_per_image")}}
        res["webcam_all"] = all_
        for name, v in all_.items():
            log(f"  webcam all {name:28s} recall@0.3 {100 * v['recall_iou30']:.1f}% "
                f"@0.5 {100 * v['recall_iou50']:.1f}% cpu {v['cpu_ms_per_image']:.1f} ms")
    return res


def bench_accuracy(spec: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from vitfas.bundle import load_bundle
    from vitfas.export.quantize import agreement, calibration_batches
    from vitfas.metrics.calibration import scaled_softmax
    from vitfas.metrics.core import Scores, auc, eer, error_rates
    from vitfas.metrics.evaluation import _open_dataset, row_is_fta

    src, manifest = spec.split("=", 1)
    d = tmp / f"acc_{len(list(tmp.iterdir()))}"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy2(Path(src) / f, d / f)
    b = load_bundle(d)
    log(f"accuracy {src} on {manifest}: export and quantize")
    graphs = prepare_graphs(b, calibration_batches(b, manifest, "train", 128))
    rts = runtimes(b, graphs, args.threads, not args.no_bf16)
    ds = _open_dataset(Path(manifest), b)
    live, temp = b.live_index, b.temperature
    thr = b.threshold if b.threshold is not None else 0.5
    out: dict[str, Any] = {"bundle": src, "manifest": manifest, "threshold": thr,
                           "model": b.model_id, "splits": {}}
    for split in ("dev", "test"):
        idx = [i for i, r in enumerate(ds.rows)
               if str(r.get("split", "")).strip() == split and not row_is_fta(r)]
        n_fta = sum(1 for r in ds.rows if str(r.get("split", "")).strip() == split
                    and row_is_fta(r))
        probs: dict[str, list[float]] = {k: [] for k in rts}
        for s in range(0, len(idx), 32):
            x = np.stack([ds[i][0].numpy() for i in idx[s:s + 32]]).astype(np.float32)
            for k, rt in rts.items():
                probs[k] += scaled_softmax(rt(x).astype(np.float64), temp)[:, live].tolist()
        labels = [ds.rows[i].get("label", "") for i in idx]
        types = [ds.rows[i].get("attack_type", "") for i in idx]
        res = {}
        for k, p in probs.items():
            sc = Scores.from_arrays(np.asarray(p), labels, types)
            er = error_rates(sc, thr)
            res[k] = {"n": len(p), "auc": auc(sc), "eer": eer(sc).value, "hter": er.hter,
                      "apcer": er.apcer_max, "bpcer": er.bpcer,
                      **agreement(np.asarray(probs["torch fp32"]), np.asarray(p), thr)}
        out["splits"][split] = {"fta_rows_not_scored": n_fta, **res}
        for k, v in res.items():
            log(f"  {split} {k:18s} AUC {v['auc']:.4f} EER {v['eer']:.4f} HTER {v['hter']:.4f}"
                f" max|dP| {v['max_abs_dp']:.4f} identical {100 * v['identical_decisions']:.2f}%")
    return out


def machine() -> dict[str, Any]:
    from vitfas.predict.runtime import bf16_support, cpu_flags, cpu_name

    flags = cpu_flags()
    import onnxruntime

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512": any(f.startswith("avx512") for f in flags),
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
            "bf16": bf16_support()[1], "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="latency,e2e,recall,accuracy")
    p.add_argument("--sizes", default="Ti,S,B")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--iters", type=int, default=3, help="calls per runtime per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bf16", action="store_true", help="leave torch bf16 out")
    p.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "fixtures" / "faces")
    p.add_argument("--detect-side", type=int, default=480)
    p.add_argument("--extra-sides", type=lambda s: [int(v) for v in s.split(",") if v],
                   default=[400], help="more detection sides for the recall table")
    p.add_argument("--frames", nargs="*", default=[],
                   help="index CSVs of webcam frames with a face_box column (ground truth)")
    p.add_argument("--frames-per-set", type=int, default=150)
    p.add_argument("--accuracy", nargs="*", default=[], metavar="BUNDLE=MANIFEST")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    res: dict[str, Any] = {"machine": machine(), "threads": args.threads,
                           "rounds": args.rounds, "iters": args.iters}
    log(f"machine: {res['machine']}")
    with tempfile.TemporaryDirectory(prefix="bench_deploy_") as d:
        tmp = Path(d)
        if "recall" in parts:
            res["recall"] = bench_recall(args)
        if "accuracy" in parts and args.accuracy:
            res["accuracy"] = [bench_accuracy(s, args, tmp) for s in args.accuracy]
        if "latency" in parts:
            res["latency"] = bench_latency(args.sizes.split(","), args, tmp)
        if "e2e" in parts:
            res["e2e"] = bench_e2e(args, tmp)
    res["machine"]["load_avg_end"] = os.getloadavg()
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
