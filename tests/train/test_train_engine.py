"""The training engine: config loading, optimiser groups, schedule, resume bit-for-bit."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vitfas.errors import BadCheckpointError, BadConfigError
from vitfas.models import create_model
from vitfas.train.config import load_config, save_config
from vitfas.train.engine import Engine, NonFiniteLossError, TrainerConfig, seed_everything
from vitfas.train.optim import OptimConfig, WarmupCosine, build_optimizer, param_groups

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=2)


@dataclass(frozen=True)
class _Sub:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    mode: str = "a"


@dataclass(frozen=True)
class _Top:
    epochs: int = 1
    name: str | None = None
    sub: _Sub = field(default_factory=_Sub)
    extra: dict = field(default_factory=dict)


def test_config_yaml_overrides_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\nsub:\n  lr: 1e-3\n  betas: [0.8, 0.9]\n")
    cfg = load_config(_Top, p, ["sub.lr=0.5", "name=x", "extra.depth=3", "extra.a.b=1"])
    assert cfg == _Top(2, "x", _Sub(0.5, (0.8, 0.9)), {"depth": 3, "a": {"b": 1}})
    with pytest.raises(BadConfigError, match=r"sub.lrr.*valid keys.*betas.*lr.*mode"):
        load_config(_Top, p, ["sub.lrr=1"])
    p.write_text("epochs: 2\nsub:\n  lr: 1\n  bogus: 3\n")
    with pytest.raises(BadConfigError, match=r"c.yaml.*sub.bogus.*valid keys"):
        load_config(_Top, p)
    with pytest.raises(BadConfigError, match="epochs: expected an integer, got 'two'"):
        load_config(_Top, None, ["epochs=two"])
    with pytest.raises(BadConfigError, match="not of the form"):
        load_config(_Top, None, ["epochs"])
    save_config(cfg, tmp_path / "r.yaml")
    assert load_config(_Top, tmp_path / "r.yaml") == cfg


def test_schedule_warmup_then_cosine():
    s = WarmupCosine(lr=1.0, min_lr=0.1, warmup_steps=4, total_steps=14)
    assert [s.lr_at(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s.lr_at(4) == pytest.approx(1.0)
    assert s.lr_at(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.lr_at(14) == pytest.approx(0.1)
    assert all(s.lr_at(i) >= s.lr_at(i + 1) for i in range(4, 20))


def test_layer_decay_groups():
    model = create_model("vit_tiny_patch16_224", **TINY)  # depth 2 -> layer ids 0..3
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert scale["head.weight"] == 1.0 and scale["norm.weight"] == 1.0
    assert scale["blocks.1.mlp.fc1.weight"] == 0.5
    assert scale["blocks.0.attn.qkv.weight"] == 0.25
    assert scale["patch_embed.proj.weight"] == scale["cls_token"] == scale["pos_embed"] == 0.125
    assert wd["blocks.0.attn.qkv.weight"] == 0.05
    assert wd["blocks.0.attn.qkv.bias"] == wd["norm.weight"] == wd["pos_embed"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = build_optimizer(model, OptimConfig(lr=0.1, layer_decay=0.5))
    s = WarmupCosine(0.1, 0.0, 0, 10)
    s.apply(opt, 0)
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    assert lrs["blocks.0.attn.qkv.weight"] == pytest.approx(0.025)


class _Noisy(Dataset):
    """Random images with random augmentation (noise + flip) drawn from torch's RNG."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        self.y = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        x = self.x[i] + 0.1 * torch.randn(3, 16, 16)
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.y[i]


class _CE:
    def training_step(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}

    def evaluate(self, model, loader):
        losses = [F.cross_entropy(model(x), y).item() for x, y in loader]
        return {"loss": sum(losses) / len(losses)}


def _run(tmp_path, name, max_steps, resume=False, workers=0, epochs=3):
    seed_everything(0)
    model = create_model("vit_tiny_patch16_224", drop_path_rate=0.2, drop_rate=0.1, **TINY)
    cfg = TrainerConfig(epochs=epochs, max_steps=max_steps, batch_size=4, num_workers=workers,
                        grad_clip=1.0, ema_decay=0.9, log_every=1, best_metric="loss",
                        seed=3)
    eng = Engine(model, _CE(), cfg, OptimConfig(lr=1e-3, warmup_steps=3, layer_decay=0.8),
                 _Noisy(), tmp_path / name, eval_set=_Noisy(8), quiet=True)
    res = eng.fit(resume=resume)
    return eng, res


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resume_is_bit_for_bit(tmp_path):
    straight, res = _run(tmp_path, "a", 0)
    assert res.finished and res.step == 18
    _half, res_h = _run(tmp_path, "b", 8)  # stops mid-epoch 2 (6 steps per epoch)
    assert not res_h.finished and res_h.step == 8
    resumed, res_r = _run(tmp_path, "b", 0, resume=True, workers=2)
    assert res_r.finished and res_r.step == 18
    for (k, a), b in zip(straight.model.state_dict().items(),
                         resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(straight.ema.module.state_dict().values(),
                    resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    assert res.best_value == res_r.best_value and res.best_epoch == res_r.best_epoch
    # the logs are continuous: one row per step, no duplicates after the resume
    rows = _csv(tmp_path / "b" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 19))
    rows_a = _csv(tmp_path / "a" / "train_log.csv")
    assert [r["loss"] for r in rows] == [r["loss"] for r in rows_a]
    assert [r["grad_norm"] for r in rows] == [r["grad_norm"] for r in rows_a]
    assert all(float(r["grad_norm"]) > 0 for r in rows)
    with pytest.raises(BadCheckpointError, match="weights only"):
        _run(tmp_path, "b", 0, resume=tmp_path / "b" / "best.pt")
    assert (tmp_path / "b" / "best.pt").is_file() and any((tmp_path / "b" / "tb").iterdir())


def test_nonfinite_loss_stops_with_step(tmp_path):
    class _Bad(_CE):
        def training_step(self, model, batch):
            loss, logs = super().training_step(model, batch)
            return loss * float("nan") if self.n == 2 else loss, logs

        n = 0

    task = _Bad()
    orig = task.training_step

    def step(model, batch):
        task.n += 1
        return orig(model, batch)

    task.training_step = step
    model = create_model("vit_tiny_patch16_224", **TINY)
    eng = Engine(model, task, TrainerConfig(epochs=1, batch_size=4), OptimConfig(),
                 _Noisy(), tmp_path, quiet=True)
    with pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 1\).*loss=nan"):
        eng.fit()


def test_bf16_autocast_on_cpu_trains(tmp_path):
    model = create_model("vit_tiny_patch16_224", **TINY)
    cfg = TrainerConfig(epochs=1, batch_size=4, precision="bf16", log_every=1)
    eng = Engine(model, _CE(), cfg, OptimConfig(lr=1e-3), _Noisy(8), tmp_path, quiet=True)
    before = model.head.weight.detach().clone()
    res = eng.fit()
    assert res.step == 2 and not torch.equal(before, model.head.weight)
    with pytest.raises(BadConfigError, match="fp16 needs a CUDA"):
        Engine(model, _CE(), TrainerConfig(precision="fp16", device="cpu"), OptimConfig(),
               _Noisy(8), tmp_path, quiet=True)


@pytest.mark.parametrize("name", ["fas_vit_small_adapters", "imagefolder", "synthetic_halftone"])
def test_example_configs_load(name):
    from vitfas.train.run import TrainConfig

    cfg = load_config(TrainConfig, name, ["trainer.epochs=1"])  # shipped config, by name
    assert cfg.trainer.epochs == 1 and cfg.optim.lr > 0


def test_gradient_scaler_path(tmp_path):
    """The fp16 code path (scale, unscale, clip, step, update) on a CPU scaler."""
    model = create_model("vit_tiny_patch16_224", **TINY)
    cfg = TrainerConfig(epochs=1, batch_size=4, grad_clip=0.5)
    eng = Engine(model, _CE(), cfg, OptimConfig(lr=1e-3), _Noisy(8), tmp_path, quiet=True)
    eng.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = model.head.weight.detach().clone()
    res = eng.fit()
    assert res.step == 2 and not torch.equal(before, model.head.weight)
    sd = torch.load(tmp_path / "last.pt", weights_only=True)
    assert sd["scaler"]["scale"] > 0
