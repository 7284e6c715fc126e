"""Which nodes of a trained bundle's graph int8 quantization hurts most (sensitivity sweep).

    python benchmarks/quant_sensitivity.py BUNDLE MANIFEST [--static] [--per-node] \\
        [--config NAME=PATTERN[,PATTERN...]] [-o results.json]

Scores the dev and test rows of MANIFEST (failures to acquire left out) with the bundle's
fp32 PyTorch model, then with int8 graphs quantized by :func:`vitfas.export.quantize.
quantize_int8` under several settings, one crop per call (as ``vitfas predict`` scores a
photo with one face), and reports for each setting the largest and mean |dP(live)|, the
share of identical decisions at the bundle's threshold and the AUC, per split. Settings:
everything quantized; each of a few node groups kept in fp32 (patch embedding, head, MLP
fc2, attention products, first / last block; ``--static-groups``: the same for static
quantization); with ``--per-node`` every single node kept
in fp32 in turn; ``--config`` adds named pattern sets. ``--static`` adds static (QDQ)
quantization calibrated on 128 / 512 train-split crops with minmax / percentile / entropy
ranges. The bundle folder is copied, never written.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GROUPS: dict[str, list[str]] = {
    "all int8": [],
    "fp32 patch_embed": ["patch_embed*"],
    "fp32 head": ["head"],
    "fp32 attention products": ["*/scaled_dot_product_attention"],
    "fp32 mlp.fc2": ["blocks.*.mlp.fc2"],
    "fp32 mlp.fc1": ["blocks.*.mlp.fc1"],
    "fp32 attn.qkv": ["blocks.*.attn.qkv"],
    "fp32 attn.proj": ["blocks.*.attn.proj"],
    "fp32 adapters": ["blocks.*_adapter.*"],
    "fp32 first block": ["blocks.0.*"],
    "fp32 last block": ["blocks.{last}.*"],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from vitfas.bundle import load_bundle
    from vitfas.export.onnx import export_onnx
    from vitfas.export.quantize import (
        agreement,
        calibration_batches,
        quantizable_nodes,
        quantize_int8,
    )
    from vitfas.metrics.calibration import scaled_softmax
    from vitfas.metrics.core import Scores, auc
    from vitfas.metrics.evaluation import _open_dataset, row_is_fta
    from vitfas.predict.runtime import onnx_runtime, torch_runtime

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--static", action="store_true", help="also static (QDQ) settings")
    ap.add_argument("--no-dynamic", action="store_true", help="leave the dynamic settings out")
    ap.add_argument("--static-groups", action="store_true",
                    help="static (minmax, 128 train crops) with each node group kept in fp32")
    ap.add_argument("--per-node", action="store_true", help="each node kept in fp32 in turn")
    ap.add_argument("--config", action="append", default=[], metavar="NAME=PATTERNS")
    ap.add_argument("--full-range", action="store_true", help="also 8-bit weights")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="quant_sens_") as tmp:
        d = Path(tmp)
        for f in ("config.json", "model.safetensors"):
            shutil.copy2(args.bundle / f, d / f)
        b = load_bundle(d)
        export_onnx(b, d / "model.onnx")
        ds = _open_dataset(args.manifest, b)
        live, temp = b.live_index, b.temperature
        thr = b.threshold if b.threshold is not None else 0.5
        splits: dict[str, Any] = {}
        ref_rt = torch_runtime(b.model)
        for split in ("dev", "test"):
            idx = [i for i, r in enumerate(ds.rows)
                   if str(r.get("split", "")).strip() == split and not row_is_fta(r)]
            x = [ds[i][0].unsqueeze(0).numpy().astype(np.float32) for i in idx]
            ref = np.array([scaled_softmax(ref_rt(v).astype(np.float64), temp)[0, live]
                            for v in x])
            splits[split] = {"x": x, "ref": ref,
                             "labels": [ds.rows[i].get("label", "") for i in idx]}
        log(f"scored fp32: dev {len(splits['dev']['x'])}, test {len(splits['test']['x'])}")
        nodes = quantizable_nodes(d / "model.onnx")
        blocks = sorted({int(n["label"].split(".")[1]) for n in nodes
                         if n["label"].startswith("blocks.")})
        configs: list[tuple[str, dict[str, Any]]] = []
        for name, pats in GROUPS.items():
            pats = [p.replace("{last}", str(blocks[-1])) for p in pats]
            configs.append((f"dynamic, {name}", {"keep_fp32": pats}))
        if args.full_range:
            configs.append(("dynamic, all int8, 8-bit weights",
                            {"keep_fp32": [], "reduce_range": False}))
        for spec in args.config:
            name, pats = spec.split("=", 1)
            configs.append((f"dynamic, {name}", {"keep_fp32": pats.split(",")}))
        if args.per_node:
            for lab in dict.fromkeys(n["label"] for n in nodes):
                configs.append((f"dynamic, fp32 {lab}", {"keep_fp32": [lab]}))
        if args.no_dynamic:  # the --config settings stay
            configs = [c for c in configs if c[0][len("dynamic, "):] not in GROUPS]
        if args.static_groups:
            cal = calibration_batches(b, args.manifest, "train", 128)
            for name, pats in GROUPS.items():
                pats = [p.replace("{last}", str(blocks[-1])) for p in pats]
                configs.append((f"static minmax 128 rows, {name}",
                                {"calibrate": cal, "keep_fp32": pats}))
        if args.static:
            for rows in (128, 512):
                cal = calibration_batches(b, args.manifest, "train", rows)
                for method in ("minmax", "percentile", "entropy"):
                    if rows == 512 and method == "entropy":
                        continue  # entropy histograms of 512 crops: slow, and not better
                    for extra in ([], *[[s] for s in args.config]):
                        pats = extra[0].split("=", 1)[1].split(",") if extra else []
                        tag = f" + {extra[0].split('=')[0]}" if extra else ""
                        configs.append((f"static {method} {rows} rows{tag}",
                                        {"calibrate": cal, "calib_method": method,
                                         "keep_fp32": pats}))
        results = []
        for name, kw in configs:
            out = d / "q.onnx"
            rep = quantize_int8(b, d / "model.onnx", out, check_rows=2, **kw)
            rt = onnx_runtime(out, 1, name="onnx-int8")
            row: dict[str, Any] = {"config": name, "fp32_nodes": rep["fp32_nodes"],
                                   "bytes": rep["bytes"]}
            for split, s in splits.items():
                p = np.array([scaled_softmax(rt(v).astype(np.float64), temp)[0, live]
                              for v in s["x"]])
                a = agreement(s["ref"], p, thr)
                a["auc"] = auc(Scores.from_arrays(p, s["labels"]))
                a["auc_fp32"] = auc(Scores.from_arrays(s["ref"], s["labels"]))
                row[split] = a
            results.append(row)
            log(f"{name:55s} " + " | ".join(
                f"{k} max {row[k]['max_abs_dp']:.4f} mean {row[k]['mean_abs_dp']:.4f} "
                f"same {100 * row[k]['identical_decisions']:.2f}%" for k in splits))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"threshold": thr, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
