"""vitfas vs timm vs transformers: ViT inference and training speed, side by side.

All three libraries run the same architecture with the same weights (timm's state dict loads
into vitfas unchanged; the transformers model is built with the same shapes). Measurements
alternate between the libraries round by round in one process, and the figures reported
are medians over rounds, so that load on the machine hits all three alike; the table gives
the ratios vitfas/timm and vitfas/transformers (> 1 means vitfas is faster).

    python benchmarks/bench_models.py --quick                # a smoke run, ~1-2 minutes
    python benchmarks/bench_models.py -o benchmarks/results/cpu.json
    python benchmarks/bench_models.py --sizes B --modes infer --dtypes bf16 --compile

Modes: ``infer`` (images/s at ``--batch``), ``latency`` (batch 1, p50/p95 ms), ``train``
(images/s of forward + backward + AdamW step at ``--train-batch``). ``--memory`` adds the
peak resident memory of each (library, size, mode) measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

SIZES = {  # name: (vitfas/timm name, width, depth, heads)
    "Ti": ("vit_tiny_patch16_224", 192, 12, 3),
    "S": ("vit_small_patch16_224", 384, 12, 6),
    "B": ("vit_base_patch16_224", 768, 12, 12),
}
LIBS = ("vitfas", "timm", "transformers")


class HFWrapper(nn.Module):
    """Return a plain logits tensor from a transformers model."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(pixel_values=x).logits


def build(lib: str, size: str) -> nn.Module:
    """The ViT of ``size`` from ``lib``, fp32, same weights for vitfas and timm."""
    name, width, depth, heads = SIZES[size]
    torch.manual_seed(0)
    if lib == "transformers":
        from transformers import ViTConfig, ViTForImageClassification

        cfg = ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                        intermediate_size=4 * width, image_size=224, patch_size=16,
                        num_labels=1000, layer_norm_eps=1e-6, attn_implementation="sdpa")
        return HFWrapper(ViTForImageClassification(cfg))
    import timm

    ref = timm.create_model(name, pretrained=False)
    if lib == "timm":
        return ref
    import vitfas

    ours = vitfas.create_model(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours


def autocast(dtype: str) -> contextlib.AbstractContextManager[Any]:
    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(model: nn.Module, mode: str, dtype: str, batch: int) -> Callable[[], None]:
    """A closure running one measured unit of work."""
    x = torch.randn(batch, 3, 224, 224)
    if mode in ("infer", "latency"):
        model.eval()

        def infer() -> None:
            with torch.inference_mode(), autocast(dtype):
                model(x)

        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, 1000, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(dtype):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return train


def timed(fn: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            batch = {"infer": args.batch, "latency": 1, "train": args.train_batch}[mode]
            for dtype in args.dtypes:
                for comp in args.compile_modes:
                    steps: dict[str, Callable[[], None]] = {}
                    for lib in args.libs:
                        model = build(lib, size)
                        if comp == "compile":
                            model = torch.compile(model)
                        steps[lib] = make_step(model, mode, dtype, batch)
                        for _ in range(args.warmup):
                            steps[lib]()
                    if comp == "compile" and "vitfas" in args.libs:
                        # the eager model in the same rounds: compile's own speed-up
                        steps["vitfas_eager"] = make_step(build("vitfas", size), mode, dtype,
                                                          batch)
                        for _ in range(args.warmup):
                            steps["vitfas_eager"]()
                    libs = list(steps)
                    n = args.iters if mode != "latency" else args.latency_iters
                    times: dict[str, list[float]] = {lib: [] for lib in libs}
                    for r in range(args.rounds):
                        order = libs if r % 2 == 0 else list(reversed(libs))
                        for lib in order:
                            times[lib] += timed(steps[lib], n)
                    row = {"size": size, "mode": mode, "dtype": dtype, "compile": comp,
                           "batch": batch}
                    for lib, ts in times.items():
                        med = statistics.median(ts)
                        row[f"{lib}_img_s"] = batch / med
                        if mode == "latency":
                            qs = statistics.quantiles(ts, n=20)
                            row[f"{lib}_p50_ms"] = 1e3 * med
                            row[f"{lib}_p95_ms"] = 1e3 * qs[18]
                    for other in ("timm", "transformers"):
                        if other in times and "vitfas" in times:
                            row[f"vs_{other}"] = row["vitfas_img_s"] / row[f"{other}_img_s"]
                    if "vitfas_eager" in times:
                        row["compile_speedup"] = row["vitfas_img_s"] / row["vitfas_eager_img_s"]
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    parts = [f"{row['size']:>2} {row['mode']:<7} {row['dtype']:<4} {row['compile']:<7} "
             f"b{row['batch']:<3}"]
    for lib in LIBS:
        if f"{lib}_img_s" in row:
            if row["mode"] == "latency":
                parts.append(f"{lib} p50 {row[f'{lib}_p50_ms']:7.1f} ms p95 "
                             f"{row[f'{lib}_p95_ms']:7.1f}")
            else:
                parts.append(f"{lib} {row[f'{lib}_img_s']:7.2f} img/s")
    for other in ("timm", "transformers"):
        if f"vs_{other}" in row:
            parts.append(f"x{other} {row[f'vs_{other}']:.3f}")
    if "compile_speedup" in row:
        parts.append(f"compiled/eager {row['compile_speedup']:.3f}")
    return " | ".join(parts)


def child_memory(lib: str, size: str, mode: str, batch: int, dtype: str) -> dict[str, float]:
    """Run one config in a fresh interpreter; return resident memory figures in MiB."""
    code = f"""
import resource, json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import bench_models as b, torch
torch.set_num_threads(2)
m = b.build({lib!r}, {size!r})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
step = b.make_step(m, {mode!r}, {dtype!r}, {batch})
step(); step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"model_mib": base / 1024, "peak_mib": peak / 1024,
                   "delta_mib": (peak - base) / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["Ti", "S", "B"], choices=list(SIZES))
    p.add_argument("--modes", nargs="+", default=["infer", "latency", "train"],
                   choices=["infer", "latency", "train"])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--no-eager", action="store_true", help="only torch.compile")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=2, help="timed iterations per round")
    p.add_argument("--latency-iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", action="store_true",
                   help="peak resident memory per config (fresh subprocess each)")
    p.add_argument("--quick", action="store_true", help="Ti only, few iterations")
    p.add_argument("-o", "--output", type=Path, default=None, help="write JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds, args.iters, args.latency_iters, args.warmup = ["Ti"], 3, 1, 5, 1
        args.batch, args.train_batch = 8, 8
    args.compile_modes = ([] if args.no_eager else ["eager"]) + (
        ["compile"] if args.compile or args.no_eager else [])
    torch.set_num_threads(args.threads)
    import timm
    import transformers

    import vitfas

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.processor() or platform.machine(),
        "cpu": _cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "vitfas": vitfas.__version__,
    }
    print(json.dumps(meta))
    rows = bench(args)
    memory = []
    if args.memory:
        for size in args.sizes:
            for mode in args.modes:
                batch = {"infer": args.batch, "latency": 1, "train": args.train_batch}[mode]
                for lib in args.libs:
                    m = child_memory(lib, size, mode, batch, "fp32")
                    memory.append({"size": size, "mode": mode, "lib": lib, "batch": batch, **m})
                    print(f"memory {size} {mode} b{batch} {lib}: peak {m['peak_mib']:.0f} MiB "
                          f"(+{m['delta_mib']:.0f} over the built model)", flush=True)
    print_summary(rows)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"meta": meta, "rows": rows, "memory": memory},
                                          indent=2))
        print(f"wrote {args.output}")
    return 0


def print_summary(rows: list[dict[str, Any]]) -> None:
    print("\nratios (vitfas / other, images per second; > 1 = vitfas faster)")
    print("| size | mode | dtype | compile | vs timm | vs transformers | compiled / eager |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['mode']} | {r['dtype']} | {r['compile']} | "
              f"{r.get('vs_timm', float('nan')):.3f} | "
              f"{r.get('vs_transformers', float('nan')):.3f} | "
              f"{r.get('compile_speedup', float('nan')):.3f} |")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    _ = resource  # used in the child code
    sys.exit(main())
