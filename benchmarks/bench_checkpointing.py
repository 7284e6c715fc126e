"""Gradient checkpointing: peak memory and speed of a training step, with and without.

Each setting runs in a fresh interpreter so that peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated`` over the steady-state steps; on the CPU the growth of
the peak resident set (``ru_maxrss``) over the built model during the training steps, that
is activations + gradients + AdamW state + workspace (the last three are the same with and
without checkpointing, so the difference is the activations saved).

    python benchmarks/bench_checkpointing.py                       # ViT-L/16, batch 8, CPU
    python benchmarks/bench_checkpointing.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, statistics, time, torch, vitfas
torch.manual_seed(0)
torch.set_num_threads({threads})
dev = {device!r}
m = vitfas.create_model({model!r}).to(dev).train()
m.set_grad_checkpointing({ckpt})
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
x = torch.randn({batch}, 3, 224, 224, device=dev)
y = torch.randint(0, 1000, ({batch},), device=dev)
def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled={bf16}):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
step()  # optimiser state now exists
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if dev.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range({iters}):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
if dev.startswith("cuda"):
    peak = torch.cuda.max_memory_allocated() / 2**30
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 2**20
print(json.dumps({{"step_s": statistics.median(times), "peak_gib": peak}}))
"""


def run(args: argparse.Namespace, ckpt: bool) -> dict:
    code = CHILD.format(threads=args.threads, device=args.device, model=args.model,
                        ckpt=ckpt, batch=args.batch, bf16=args.bf16, iters=args.iters)
    if args.device == "cpu":
        # ru_maxrss is a lifetime peak: take the baseline before the first step instead
        code = code.replace("step()  # optimiser state now exists\n", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vit_large_patch16_224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("-o", "--output", type=Path)
    args = p.parse_args(argv)
    rows = []
    for ckpt in (False, True):
        r = {"model": args.model, "batch": args.batch, "device": args.device,
             "grad_checkpointing": ckpt, **run(args, ckpt)}
        r["img_s"] = args.batch / r["step_s"]
        rows.append(r)
        print(f"{args.model} b{args.batch} {args.device} checkpointing={ckpt}: "
              f"{r['step_s']:.2f} s/step ({r['img_s']:.2f} img/s), peak +{r['peak_gib']:.2f} GiB",
              flush=True)
    print(f"memory x{rows[1]['peak_gib'] / rows[0]['peak_gib']:.2f}, "
          f"speed x{rows[1]['img_s'] / rows[0]['img_s']:.2f} with checkpointing")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
