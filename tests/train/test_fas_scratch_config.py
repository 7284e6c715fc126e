"""The shipped fas_scratch config: it loads strictly, builds the conv-stem model it documents, and
trains into a bundle that loads, explains and exports (one short epoch on generated data)."""

from __future__ import annotations

import pytest
import torch
import yaml


def test_config_loads_and_builds_the_documented_model() -> None:
    from vitfas.configs import config_text, list_configs
    from vitfas.models import ConvStemVisionTransformer
    from vitfas.train.config import load_config
    from vitfas.train.run import TrainConfig, build_model

    assert "fas_scratch" in list_configs()
    cfg = load_config(TrainConfig, None, ["data.path=m.csv"],
                      data=yaml.safe_load(config_text("fas_scratch")))
    assert cfg.model.pretrained is None and cfg.data.img_size == 64
    m = build_model(cfg, 2)
    assert isinstance(m, ConvStemVisionTransformer)
    assert m.config.stem == "cdc" and m.config.cdc_theta == 0.7
    assert sum(p.numel() for p in m.parameters()) == 232_274  # "0.23 M" in the file


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_config_trains_a_bundle_the_other_verbs_take(tmp_path) -> None:
    from vitfas import cli
    from vitfas.bundle import load_bundle
    from vitfas.explain.explainer import explain
    from vitfas.export.onnx import export_onnx
    from vitfas.train.synthetic import write_imagefolder

    data = write_imagefolder(tmp_path / "data", n_train=32, n_dev=16, n_test=16, size=64,
                             artifact="halftone", seed=0)
    out = tmp_path / "run"
    assert cli.main(["-q", "train", "fas_scratch", f"data.path={data}", "data.format=imagefolder",
                     f"out={out}", "trainer.epochs=1", "trainer.batch_size=16"]) == 0
    b = load_bundle(out / "bundle")
    assert b.threshold is not None and b.preprocessing["img_size"] == [64, 64]
    x = torch.randn(2, 3, 64, 64)
    assert explain(b.model, x, "rollout").maps.shape == (2, 8, 8)
    rep = export_onnx(b, tmp_path / "m.onnx")
    assert rep["ok"]
