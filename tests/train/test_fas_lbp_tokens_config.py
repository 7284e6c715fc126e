"""The shipped fas_lbp_tokens config: listed, loads strictly, builds the LBP-token ViT it
documents without colour jitter, and `vitfas train fas_lbp_tokens` trains a bundle from a
tiny manifest made on the spot."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


def test_config_listed_loads_and_builds_the_documented_model() -> None:
    from vitfas import cli
    from vitfas.configs import config_text, list_configs
    from vitfas.models import LBPTokenVisionTransformer
    from vitfas.train.config import load_config
    from vitfas.train.run import TrainConfig, build_model

    assert "fas_lbp_tokens" in list_configs()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["config", "list"]) == 0
    assert "fas_lbp_tokens" in [ln.split()[0] for ln in buf.getvalue().splitlines()]
    raw = yaml.safe_load(config_text("fas_lbp_tokens"))
    cfg = load_config(TrainConfig, None, ["data.path=m.csv"], data=raw)
    assert cfg.model.name == "vit_lbptok_g2_64" and cfg.model.pretrained is None
    assert cfg.trainer.epochs == 3 and cfg.optim.lr == 1.0e-3 and cfg.optim.warmup_epochs == 1
    aug = raw["data"]["augment"]
    assert all(aug[k] == 0 for k in ("brightness", "contrast", "saturation", "hue"))
    assert aug["hflip"] > 0 and aug["blur"] > 0 and aug["jpeg"] > 0
    m = build_model(cfg, 2)
    assert isinstance(m, LBPTokenVisionTransformer)
    # the model undoes the normalisation the data loader applies
    assert m.config.input_mean == tuple(cfg.data.mean)
    assert m.config.input_std == tuple(cfg.data.std)
    assert sum(p.numel() for p in m.parameters()) == 90_306  # "90 k" in the file


def _manifest(root: Path) -> Path:
    from vitfas.data.io import save_image
    from vitfas.data.manifest import write_manifest

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float64)
    rows = []
    for split, n in (("train", 8), ("dev", 4), ("test", 4)):
        for k in range(n):
            for label in ("live", "spoof"):
                a = rng.uniform(-1, 1, (2, 3))
                img = rng.uniform(60, 190, 3) + xx[..., None] * a[0] + yy[..., None] * a[1]
                if label == "spoof":
                    img = img + rng.normal(0, 40, img.shape)
                rel = f"{split}/{label}_{k}.png"
                save_image(root / rel, np.clip(img, 0, 255).astype(np.uint8))
                rows.append({"path": rel, "label": label,
                             "attack_type": "none" if label == "live" else "print",
                             "dataset": "synth", "subject": f"s{k}", "split": split,
                             "fta": "0"})
    return write_manifest(root / "manifest.csv", rows)


@pytest.mark.timeout(300)
def test_vitfas_train_fas_lbp_tokens_runs_on_a_manifest(tmp_path: Path) -> None:
    from vitfas import cli
    from vitfas.bundle import load_bundle
    from vitfas.models import LBPTokenVisionTransformer

    data = _manifest(tmp_path / "data")
    out = tmp_path / "run"
    assert cli.main(["-q", "train", "fas_lbp_tokens", f"data.path={data}", f"out={out}",
                     "trainer.batch_size=8"]) == 0
    b = load_bundle(out / "bundle")
    assert isinstance(b.model, LBPTokenVisionTransformer)
    assert b.threshold is not None and b.preprocessing["img_size"] == [64, 64]
    with torch.no_grad():
        assert b.model(torch.randn(2, 3, 64, 64)).shape == (2, 2)
