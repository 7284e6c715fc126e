"""`vitfas info`: shapes, parameter count, FLOPs, activation memory."""

from __future__ import annotations

import json

import pytest

from vitfas.cli import main
from vitfas.models.info import model_info


def test_vit_b16_figures() -> None:
    info = model_info("vit_base_patch16_224", batch_size=2)
    assert info.params == 86_567_656
    assert round(info.gflops, 1) == 35.1
    stages = dict(info.stages)
    assert stages["patch embedding"] == [2, 196, 768]
    assert stages["+ prefix tokens + position"] == [2, 197, 768]
    assert stages["blocks 0-11"] == [2, 197, 768]
    assert stages["logits"] == [2, 1000]
    assert info.input_shape == [2, 3, 224, 224]


def test_flops_formula_and_activation_scaling() -> None:
    """FLOPs = 2 * MACs of patch embed, qkv/proj/MLP, both attention matmuls, head."""
    info = model_info("vit_tiny_patch16_224", num_classes=2)
    n, d, p = 197, 192, 196
    macs = p * 3 * 16 * 16 * d + 12 * (12 * n * d * d + 2 * n * n * d) + d * 2
    assert info.gflops == pytest.approx(2 * macs / 1e9, rel=1e-6)
    a1 = model_info("vit_tiny_patch16_224", batch_size=1).activation_mib
    a4 = model_info("vit_tiny_patch16_224", batch_size=4).activation_mib
    assert a4 == pytest.approx(4 * a1, rel=1e-9)
    assert 20 < a1 < 40  # ViT-Ti/16: ~29 MiB per image in fp32


def test_cli_human_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "vit_base_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "86,567,656" in out and "35.1" in out and "[32, 197, 768]" in out
    assert main(["info", "vit_small_patch16_224", "--img-size", "224", "320", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input_shape"] == [32, 3, 224, 320] and d["params"] > 22_000_000
    assert main(["info", "vit_nope"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["info"]) == 2


def test_info_on_mae_reports_reconstruction() -> None:
    info = model_info("mae_vit_base_patch16")
    stages = dict(info.stages)
    assert stages["blocks 0-11"] == [1, 50, 768]  # 25% of 196 patches + class token
    assert info.output_shape == [1, 196, 16 * 16 * 3]


def test_list_counts_parameters_and_names_public_weights(
        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from vitfas.models.registry import create_model, get_entry

    assert main(["info", "--list", "deit_tiny*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["deit_tiny_distilled_patch16_224",
                                         "deit_tiny_patch16_224"]
    with torch.device("meta"):
        n = sum(p.numel() for p in create_model("deit_tiny_patch16_224").parameters())
    assert rows[1]["params"] == n == 5_717_416  # DeiT-Ti as published (5.7 M)
    assert rows[1]["weights"] == get_entry("deit_tiny_patch16_224").hub_id is not None
    assert main(["info", "--list", "mae_vit_tiny*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "params", "public", "weights"]
    assert out[1].split()[-1] == "-"  # no public MAE-Ti checkpoint
    assert out[-1].startswith("1 models, 0 with public weights")
    assert main(["info", "--list", "nothing*"]) == 1
    assert "no model name matches 'nothing*'" in capsys.readouterr().err
    assert main(["info"]) == 2
