"""Scenarios for the distributed tests, run on 2 CPU processes by ``torchrun`` (gloo).

``python -m torch.distributed.run --nproc_per_node=2 _dist_worker.py WORKDIR core|cli`` runs
every scenario of a group in one launch (process start-up dominates on CPU);
``test_distributed.py`` imports the same helpers for the single-process references.
"""

from __future__ import annotations

import csv
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from vitfas.models.vit import VisionTransformer, ViTConfig
from vitfas.train.engine import Engine, TrainerConfig, seed_everything
from vitfas.train.optim import OptimConfig

N_TRAIN = 16
TINY = ViTConfig(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=2)


class Indexed(Dataset):
    """16 fixed random images; item -> (image [3, 16, 16] + small seeded noise, label, index)."""

    def __init__(self, n: int = N_TRAIN) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        # "augmentation" drawn from the engine's per-sample seeded RNG
        return self.x[i] + 0.1 * torch.randn(3, 16, 16), self.y[i], i


class Task:
    """Cross-entropy; records the sample indices each micro-batch saw."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def training_step(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y, idx = batch
        self.seen.append([int(i) for i in idx])
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": float((logits.detach().argmax(1) == y).float().mean())}


class EvalTask(Task):
    """Adds sharded evaluation: predictions (logits, labels, indices) and their metrics."""

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, loader: Any) -> tuple[torch.Tensor, ...]:
        out = [(model(x), y, torch.as_tensor(i)) for x, y, i in loader]
        return tuple(torch.cat([o[k] for o in out]) for k in range(3))

    def evaluate_predictions(self, preds: tuple[torch.Tensor, ...]) -> dict[str, float]:
        logits, y, idx = preds
        self.eval_indices = idx.tolist()
        return {"loss": float(F.cross_entropy(logits, y)), "n": float(len(y)),
                "order": float(sum(i * (k + 1) for k, i in enumerate(idx.tolist())))}

    def evaluate(self, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        return self.evaluate_predictions(self.predict(model, loader))


def make_engine(run_dir: Path, **trainer: Any) -> tuple[Engine, Task]:
    """A tiny ViT engine; ``trainer`` overrides :class:`TrainerConfig` fields."""
    seed_everything(0)
    model = VisionTransformer(TINY)
    cfg = TrainerConfig(**{"epochs": 1, "batch_size": 8, "device": "cpu", "seed": 0,
                           "log_every": 1, **trainer})
    task = EvalTask()
    engine = Engine(model, task, cfg, OptimConfig(lr=1e-3, weight_decay=0.05), Indexed(),
                    run_dir, eval_set=Indexed(7), quiet=True)
    return engine, task


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


# --------------------------------------------------------------------------- eval fixture
SIZE = 16
# (grey, label, attack_type, split, broken): 7 rows, one unreadable -> odd and uneven
EVAL_ROWS = [
    (200, "live", "none", "dev", False),
    (180, "live", "none", "dev", False),
    (60, "spoof", "print", "dev", False),
    (90, "spoof", "replay", "dev", False),
    (220, "live", "none", "test", False),
    (120, "live", "none", "test", True),
    (40, "spoof", "print", "test", False),
    (150, "spoof", "replay", "test", False),
    (10, "spoof", "print", "test", False),
]


class LocalManifestDataset(Dataset):
    """``ManifestDataset``'s interface (``rows``; item -> (image, label)) without vitfas.data."""

    def __init__(self, manifest: Path, bundle: Any) -> None:
        self.root = manifest.parent
        with open(manifest, newline="") as f:
            self.rows = list(csv.DictReader(f))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from vitfas.errors import BadImageError

        p = self.root / self.rows[i]["path"]
        try:
            img = Image.open(p).convert("RGB").resize((SIZE, SIZE))
        except OSError as exc:
            raise BadImageError(f"{p}: cannot read image ({exc})") from exc
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - 0.5) / 0.5, int(self.rows[i]["label"] == "live")


def make_eval_files(root: Path) -> tuple[Path, Path]:
    """A random-weight tiny bundle and a 9-row manifest of textured images (one broken)."""
    from vitfas.bundle import save_bundle

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for i, (g, lab, at, split, broken) in enumerate(EVAL_ROWS):
        path = root / f"img{i}.png"
        if broken:
            path.write_bytes(b"not a png")
        else:
            noise = rng.integers(-30, 30, (20, 20, 3))
            Image.fromarray(np.clip(g + noise, 0, 255).astype(np.uint8)).save(path)
        rows.append({"path": path.name, "label": lab, "attack_type": at, "dataset": "gen",
                     "subject": f"s{i}", "video": "", "frame": "0", "split": split})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    torch.manual_seed(5)
    model = VisionTransformer(ViTConfig(img_size=SIZE, patch_size=8, embed_dim=32, depth=2,
                                        num_heads=2, num_classes=2))
    pre = {"detector": "none", "crop_scale": 1.0, "img_size": [SIZE, SIZE], "mean": [0.5] * 3,
           "std": [0.5] * 3, "colour_order": "RGB", "frames_per_video": 1}
    bundle = save_bundle(root / "bundle", model, class_names=["spoof", "live"], live_index=1,
                         preprocessing=pre)
    return Path(bundle), manifest


def run_eval_here(bundle: Path, manifest: Path, out: Path | None) -> dict[str, Any]:
    """``vitfas eval``'s library call with the stand-in dataset; scores included."""
    from vitfas.bundle import load_bundle
    from vitfas.metrics import evaluation as ev

    payload = ev.run_eval(bundle, manifest, out_dir=out, batch_size=2, progress=False,
                          open_dataset=LocalManifestDataset)
    sm = ev.score_manifest(load_bundle(bundle), manifest, batch_size=2, progress=False,
                           open_dataset=LocalManifestDataset)
    payload["_scores"] = [None if np.isnan(s) else float(s) for s in sm.scores]
    payload["_fta"] = [bool(f) for f in sm.fta]
    payload["_unreadable"] = sm.unreadable
    return payload


def prepare_here(manifest: Path, out: Path) -> dict[str, Any]:
    """``vitfas data prepare`` (detector none, 16 px) of the eval manifest; its summary."""
    from vitfas.data.prepare import prepare
    from vitfas.faces import CropRecipe

    s = prepare(manifest, out, recipe=CropRecipe(detector="none", size=16), progress=False)
    return {k: s[k] for k in ("total", "processed", "reused", "failures")}


# --------------------------------------------------------------------------- CLI runs
def make_cli_files(root: Path) -> None:
    """Generated data for ``vitfas train`` (imagefolder) and ``vitfas pretrain-mae``."""
    from vitfas.train.synthetic import write_imagefolder

    write_imagefolder(root / "synth", n_train=32, n_dev=16, n_test=16, size=16, seed=0)


def on_rank0_then_all(write: Any) -> Any:
    """``write()`` on rank 0 only, then every rank meets: files that all ranks read are
    written once and complete before anyone reads them (two ranks writing the same file
    let one read it half-written)."""
    from vitfas.train import distributed as D

    out = write() if D.get_rank() == 0 else None
    D.barrier()
    return out


def train_config(root: Path, out: Path, batch_size: int, **trainer: Any) -> Path:
    """A tiny ``vitfas train`` config: 2 epochs of 32 images, global batch 8 (written by
    rank 0; every rank gets the path)."""
    import yaml

    cfg = {
        "out": str(out),
        "model": {"name": "vit_tiny_patch16_224", "pretrained": None, "trainable": "full",
                  "drop_path_rate": 0.0,
                  "overrides": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}},
        "data": {"format": "imagefolder", "path": str(root / "synth"), "img_size": 16},
        "optim": {"lr": 1.0e-3, "warmup_epochs": 1},
        "trainer": {"epochs": 2, "batch_size": batch_size, "best_metric": "eer",
                    "best_mode": "min", "log_every": 1, "device": "cpu", **trainer},
    }
    p = out.parent / f"{out.name}.yaml"

    def write() -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(cfg))

    on_rank0_then_all(write)
    return p


def cli_json(argv: list[str]) -> dict[str, Any]:
    """``vitfas -q ARGV --json`` in this process; its JSON (``{}`` off rank 0)."""
    import contextlib
    import io

    from vitfas.cli import main as cli_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["-q", *argv, "--json"])
    assert rc == 0, f"vitfas {argv} exited {rc}"
    out = buf.getvalue().strip()
    return json.loads(out) if out else {}


def eval_args(work: Path, out: str) -> list[str]:
    """``vitfas eval`` of the eval fixture (real ManifestDataset) into ``work/eval/out``."""
    e = work / "eval"
    return ["eval", str(e / "bundle"), str(e / "manifest.csv"), "-o", str(e / out),
            "--batch-size", "2"]


def mae_args(root: Path, out: Path, *extra: str) -> list[str]:
    cfg = out.parent / "mae.yaml"

    def write() -> None:
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text("trainer:\n  batch_size: 4\n  log_every: 1\n  device: cpu\n")

    on_rank0_then_all(write)
    return ["pretrain-mae", str(cfg), "model.name=mae_vit_tiny_patch16", "model.img_size=16",
            "model.overrides.patch_size=4", "model.overrides.embed_dim=32",
            "model.overrides.depth=2", "model.overrides.num_heads=2",
            "model.overrides.decoder_embed_dim=32", "model.overrides.decoder_depth=1",
            "model.overrides.decoder_num_heads=2",
            f"data.source={root / 'synth' / 'train'}", f"out={out}", "trainer.epochs=1",
            "vis.every=2", "vis.num_images=2", *extra]


# --------------------------------------------------------------------------- scenarios
def main(work: Path, group: str) -> None:
    """Run the scenarios of ``group``: ``core`` (engine, eval), ``cli`` (train, MAE) or
    ``fail`` (rank 1 fails while rank 0 waits in a collective).

    A scenario that fails on one rank ends the launch at once: the rank writes its results
    (with the traceback) and exits 1, and torchrun stops the other rank, which may be
    waiting in a collective this rank will never join. Collectives time out after 60 s.
    """
    import os

    import torch.distributed as dist

    from vitfas.train import distributed as D

    # the failure groups must end by failing fast, long before a collective would time out
    info = D.init_distributed("cpu", timeout_s=60 if group in ("core", "cli") else 600)
    rank = info.rank
    assert info.world_size == 2 and info.backend == "gloo", info
    results: dict[str, Any] = {"rank": rank}
    out = work / f"results_{group}_rank{rank}.json"

    def scenario(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except BaseException:
            results[name] = {"error": traceback.format_exc()}
            out.write_text(json.dumps(results, default=str))
            print(f"rank {rank}: scenario {name} failed:\n{results[name]['error']}",
                  file=sys.stderr, flush=True)
            os._exit(1)
        dist.barrier()

    # one optimiser step, 4 per rank = the global batch of 8
    def ddp_step() -> Any:
        eng, task = make_engine(work / "ddp_step", batch_size=4, max_steps=1)
        res = eng.fit()
        return {"seen": task.seen, "step": res.step, "type": type(eng.model).__name__,
                "writer": eng.writer.enabled, "eval": eng.evaluate(),
                "eval_indices": getattr(task, "eval_indices", None)}

    # the same global batch as 2 ranks x 2 micro-batches of 2
    def ddp_accum() -> Any:
        eng, task = make_engine(work / "ddp_accum", batch_size=2, accum_steps=2, max_steps=1)
        res = eng.fit()
        return {"seen": task.seen, "step": res.step}

    # stop mid-epoch 2 of 2 (3 of 4 steps); resumed on 1 process by the test
    def ddp_resume() -> Any:
        eng, task = make_engine(work / "ddp_resume", batch_size=4, epochs=2, max_steps=3)
        res = eng.fit()
        return {"seen": task.seen, "step": res.step, "epoch": res.epoch}

    def fsdp_step() -> Any:
        eng, task = make_engine(work / "fsdp_step", batch_size=4, max_steps=1, strategy="fsdp")
        res = eng.fit()
        return {"seen": task.seen, "step": res.step, "fsdp": D.is_fsdp(eng.model)}

    def dmap() -> Any:
        out = {}
        for n in (0, 1, 2, 5, 7):
            calls: list[list[int]] = []

            def fn(chunk: list[int], calls: list[list[int]] = calls) -> list[int]:
                calls.append(list(chunk))
                return [10 * c for c in chunk]

            got = D.distributed_map(fn, list(range(n)))
            out[str(n)] = {"result": got, "chunks": D.all_gather_objects(calls)}
        return out

    def evaluation() -> Any:
        bundle, manifest = work / "eval" / "bundle", work / "eval" / "manifest.csv"
        return run_eval_here(bundle, manifest, work / "eval" / "report_2")

    def train_cli(strategy: str) -> Any:
        out = work / f"train_{strategy}" / "run"
        cfg = train_config(work, out, 4, strategy=strategy)
        return cli_json(["train", str(cfg)])

    def mae_cli(strategy: str) -> Any:
        out = work / f"mae_{strategy}" / "run"
        return cli_json(mae_args(work, out, f"trainer.strategy={strategy}"))

    def prepare() -> Any:
        return prepare_here(work / "eval" / "manifest.csv", work / "prepared_2")

    if group == "core":
        scenario("ddp_step", ddp_step)
        scenario("ddp_accum", ddp_accum)
        scenario("ddp_resume", ddp_resume)
        scenario("fsdp_step", fsdp_step)
        scenario("distributed_map", dmap)
        scenario("eval", evaluation)
        scenario("prepare", prepare)
        scenario("eval_cli", lambda: cli_json(eval_args(work, "report_cli_2")))
    elif group == "cli":
        scenario("train_ddp", lambda: train_cli("ddp"))
        scenario("train_fsdp", lambda: train_cli("fsdp"))
        scenario("mae_ddp", lambda: mae_cli("ddp"))
        scenario("mae_fsdp", lambda: mae_cli("fsdp"))
    elif group == "fail":  # the hang of old: rank 1 raises, rank 0 waits in a broadcast
        def one_rank_fails() -> Any:
            if rank == 1:
                raise RuntimeError("rank 1 failed on purpose")
            return D.broadcast_object("from rank 0")

        scenario("one_rank_fails", one_rank_fails)
    elif group == "fail_cli":  # the same through the vitfas CLI: rank 1's config is bad
        cfg = train_config(work, work / "train_fail" / "run", 4)
        if rank == 1:
            cfg = cfg.with_name("missing.yaml")
        from vitfas.cli import main as cli_main

        cli_main(["train", str(cfg)])
    out.write_text(json.dumps(results, default=str))
    D.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
