"""ViT-B/16 on one GPU: bf16 inference and training throughput and MFU, beside timm.

MFU = achieved model FLOPs per second / the card's dense bf16 peak. Model FLOPs per image:
35.13 GFLOPs forward for ViT-B/16 at 224 (``vitfas info``: 2 FLOPs per multiply-add,
attention matmuls included) and 3x that for a training step (forward + backward).

    python benchmarks/bench_gpu.py -o benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --dry-run        # tiny sizes on the CPU: checks the script

Also measures gradient checkpointing on ViT-L/16 training at batch 8: peak memory and
speed with and without.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets.
PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 989.4,  # "NVIDIA H100 80GB HBM3" is the SXM part
    "H200": 989.4,
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L40S": 362.1,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "V100": 125.0,  # fp16 tensor cores; V100 has no bf16
}


def peak_tflops(device_name: str) -> float | None:
    """Match the longest table key that occurs in ``torch.cuda.get_device_name()``."""
    hits = [k for k in PEAK_BF16_TFLOPS if k in device_name]
    if "PCIe" in device_name and "H100" in device_name:
        return PEAK_BF16_TFLOPS["H100 PCIe"]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def model_gflops(name: str) -> float:
    from vitfas.models.info import model_info

    return model_info(name).gflops


def build(lib: str, name: str, device: str) -> nn.Module:
    import timm

    import vitfas

    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False)
    if lib == "timm":
        return ref.to(device)
    ours = vitfas.create_model(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable[[], None], device: str, iters: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / iters)
    return times


def steps(model: nn.Module, batch: int, device: str, train: bool, img: int) -> Callable[[], None]:
    x = torch.randn(batch, 3, img, img, device=device)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    if not train:
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), torch.autocast(dev_type, dtype=torch.bfloat16):
                model(x)

        return infer
    model.train()
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev_type == "cuda")

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev_type, dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return train_step


def throughput(args: argparse.Namespace, device: str, peak: float | None) -> list[dict]:
    gflops = model_gflops(args.model)
    rows = []
    for mode, batch in (("infer", args.infer_batch), ("train", args.train_batch)):
        fns = {}
        for lib in ("vitfas", "timm"):
            m = build(lib, args.model, device)
            if args.compile:
                m = torch.compile(m)
            fns[lib] = steps(m, batch, device, mode == "train", args.img)
            for _ in range(args.warmup):
                fns[lib]()
        times: dict[str, list[float]] = {"vitfas": [], "timm": []}
        for r in range(args.rounds):
            for lib in (("vitfas", "timm") if r % 2 == 0 else ("timm", "vitfas")):
                times[lib] += measure(fns[lib], device, args.iters, 1)
        row: dict[str, Any] = {"mode": mode, "batch": batch, "compile": args.compile}
        for lib, ts in times.items():
            img_s = batch / statistics.median(ts)
            flops = img_s * gflops * 1e9 * (3 if mode == "train" else 1)
            row[f"{lib}_img_s"] = img_s
            row[f"{lib}_tflops"] = flops / 1e12
            row[f"{lib}_mfu"] = flops / (peak * 1e12) if peak else None
        row["vs_timm"] = row["vitfas_img_s"] / row["timm_img_s"]
        rows.append(row)
        mfu = f"MFU {row['vitfas_mfu']:.1%}" if peak else "MFU n/a"
        print(f"{mode:<5} b{batch}: vitfas {row['vitfas_img_s']:.1f} img/s "
              f"({row['vitfas_tflops']:.1f} TFLOP/s, {mfu}) | timm {row['timm_img_s']:.1f} "
              f"img/s | x{row['vs_timm']:.3f}", flush=True)
    return rows


def checkpointing(args: argparse.Namespace, device: str) -> list[dict]:
    rows = []
    for ckpt in (False, True):
        m = build("vitfas", args.ckpt_model, device)
        m.set_grad_checkpointing(ckpt)
        fn = steps(m, args.ckpt_batch, device, True, args.img)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        fn()
        ts = measure(fn, device, max(1, args.iters // 2), args.rounds)
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        row = {"model": args.ckpt_model, "batch": args.ckpt_batch, "grad_checkpointing": ckpt,
               "img_s": args.ckpt_batch / statistics.median(ts), "peak_gib": peak}
        rows.append(row)
        print(f"{args.ckpt_model} b{args.ckpt_batch} checkpointing={ckpt}: "
              f"{row['img_s']:.1f} img/s, peak {peak:.2f} GiB", flush=True)
        del m, fn
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--infer-batch", type=int, default=512)
    p.add_argument("--train-batch", type=int, default=256)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--ckpt-model", default="vit_large_patch16_224")
    p.add_argument("--ckpt-batch", type=int, default=8)
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on the CPU, to check the script without a GPU")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    if args.dry_run:
        args.model = args.ckpt_model = "vit_tiny_patch16_224"
        args.infer_batch = args.train_batch = args.ckpt_batch = 2
        args.iters, args.rounds, args.warmup = 1, 2, 1
        device = "cpu"
    else:
        if not torch.cuda.is_available():
            print("no CUDA device; use --dry-run to check the script on the CPU",
                  file=sys.stderr)
            return 1
        device = "cuda"
        torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    peak = peak_tflops(name) if device == "cuda" else None
    print(f"device: {name}; dense bf16 peak: {peak} TFLOP/s")
    result = {"device": name, "peak_bf16_tflops": peak, "torch": torch.__version__,
              "throughput": throughput(args, device, peak),
              "checkpointing": checkpointing(args, device)}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
