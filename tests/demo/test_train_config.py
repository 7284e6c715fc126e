"""The demo's training configuration: the shipped fas_scratch recipe with only the demo's
data, schedule and preprocessing changed; the pre-#14 plain ViT + adapters on request."""

from __future__ import annotations

from pathlib import Path

import yaml

from vitfas.configs import config_text
from vitfas.demo.run import DemoModel, train_config
from vitfas.train.config import load_config
from vitfas.train.run import TrainConfig


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_recipe_with_demo_changes_only(tmp_path: Path) -> None:
    cfg = train_config(tmp_path / "m.csv", tmp_path / "run", size=32, epochs=7, seed=3,
                       model=None, threads=1, batch_size=16)
    recipe = _flat(yaml.safe_load(config_text("fas_scratch")))
    got = _flat(cfg)
    changed = {k for k in recipe.keys() | got.keys() if recipe.get(k) != got.get(k)}
    assert changed == {"out", "data.path", "data.img_size", "data.preprocessing.detector",
                       "data.preprocessing.crop_scale", "trainer.epochs",
                       "trainer.batch_size", "trainer.seed", "trainer.log_every"}
    assert got["data.img_size"] == 32 and got["trainer.epochs"] == 7
    assert got["trainer.batch_size"] == 16 and got["trainer.seed"] == 3
    assert got["data.preprocessing.detector"] == "dlib"
    # what issue #14 names, as the shipped recipe has it
    assert got["model.name"] == "vit_cdcstem_w64_p8_64"
    assert got["data.augment.jpeg"] == 0.3 and got["data.augment.blur"] == 0.1
    assert got["data.balance"] is True and got["loss.label_smoothing"] == 0.1
    assert got["output.weights"] == "best" and got["trainer.best_metric"] == "eer"
    load_config(TrainConfig, None, data=cfg)  # a valid vitfas train config


def test_pre_14_model_kept(tmp_path: Path) -> None:
    cfg = train_config(tmp_path / "m.csv", tmp_path / "run", size=64, epochs=30, seed=0,
                       model=DemoModel(), threads=1, batch_size=32)
    assert cfg["model"]["name"] == "vit_tiny_patch16_224"
    assert cfg["model"]["overrides"] == {"patch_size": 8, "embed_dim": 96, "depth": 4,
                                         "num_heads": 3}
    assert cfg["adapters"]["bottleneck"] == 16
    assert "loss" not in cfg and "jpeg" not in cfg["data"]["augment"]
    load_config(TrainConfig, None, data=cfg)
