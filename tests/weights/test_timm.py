"""timm ``vit_tiny_patch16_224`` -> vitfas: every container, and at other image sizes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import vitfas
from vitfas.weights import load_checkpoint

timm = pytest.importorskip("timm")

TOL = 1e-5
NAME = "vit_tiny_patch16_224"


def _write(kind: str, sd: dict, model, d: Path) -> Path:
    """Save ``sd`` the way a user would find it: plain, nested training ckpt, hub folder."""
    if kind == "pth":
        torch.save(sd, d / "w.pth")
        return d / "w.pth"
    if kind == "train_ckpt":  # timm train.py style: nested, DDP prefix, args Namespace, EMA
        ckpt = {
            "epoch": 3,
            "arch": NAME,
            "state_dict": {f"module.{k}": v for k, v in sd.items()},
            "state_dict_ema": {k: torch.zeros_like(v) for k, v in sd.items()},
            "args": argparse.Namespace(lr=1e-3, model=NAME),
            "metric": 71.5,
        }
        torch.save(ckpt, d / "checkpoint-3.pth.tar")
        return d / "checkpoint-3.pth.tar"
    if kind == "bin":
        torch.save(sd, d / "pytorch_model.bin")
        return d / "pytorch_model.bin"
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "w.safetensors"))
        return d / "w.safetensors"
    if kind == "hub_folder":
        timm.models.save_for_hf(model, str(d / "hub"), safe_serialization=True)
        return d / "hub"
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def ref_224(timm_tiny):
    """One input at 224 px and timm's logits for it."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return x, timm_tiny(x)


@pytest.mark.parametrize("kind", ["pth", "train_ckpt", "bin", "safetensors", "hub_folder"])
def test_timm_checkpoint_matches_at_224(kind, tmp_path, timm_tiny, ref_224, max_diff):
    path = _write(kind, timm_tiny.state_dict(), timm_tiny, tmp_path)
    x, ref = ref_224
    if kind in ("pth", "hub_folder"):
        # the checkpoint's own description suffices where it has one; else the name is given
        ours = vitfas.load_model(path, name=None if kind == "hub_folder" else NAME)
        assert not ours.training and ours.registry_name == NAME
    else:
        ours = vitfas.create_model(NAME, pretrained=path).eval()
    with torch.no_grad():
        assert max_diff(ours(x), ref) <= TOL


def test_train_checkpoint_ema_selectable(tmp_path, timm_tiny):
    path = _write("train_ckpt", timm_tiny.state_dict(), timm_tiny, tmp_path)
    sd = load_checkpoint(path)
    assert torch.equal(sd["blocks.0.attn.qkv.weight"], timm_tiny.blocks[0].attn.qkv.weight)
    ema = load_checkpoint(path, use_ema=True)
    assert float(ema["blocks.0.attn.qkv.weight"].abs().max()) == 0.0


@pytest.mark.parametrize("size", [(384, 384), (224, 320)])
def test_dynamic_img_size_matches_timm(size, tmp_path, timm_tiny, max_diff):
    """timm's per-forward resampling (bicubic, antialias) vs ours, same kernel."""
    path = _write("safetensors", timm_tiny.state_dict(), timm_tiny, tmp_path)
    ref_model = timm.create_model(NAME, dynamic_img_size=True)
    ref_model.load_state_dict(timm_tiny.state_dict())
    ref_model.eval()
    ours = vitfas.create_model(NAME, pretrained=path, dynamic_img_size=True).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert max_diff(ours(x), ref_model(x)) <= TOL


@pytest.mark.parametrize("size", [384, (224, 320)])
def test_resample_on_load_matches_timm(size, tmp_path, timm_tiny, max_diff):
    """A 224 checkpoint loaded into a 384 (or 224x320) model: same position embedding as
    timm's own loader (create_model(..., img_size=..., pretrained_cfg_overlay=file))."""
    path = _write("safetensors", timm_tiny.state_dict(), timm_tiny, tmp_path)
    ref = timm.create_model(
        NAME, pretrained=True, img_size=size, pretrained_cfg_overlay={"file": str(path)}
    ).eval()
    ours = vitfas.create_model(NAME, pretrained=path, img_size=size).eval()
    assert ours.pos_embed.shape == ref.pos_embed.shape
    assert max_diff(ours.pos_embed, ref.pos_embed) <= 1e-6
    # and timm's checkpoint_filter_fn on its own gives the same tensor
    filtered = timm.models.vision_transformer.checkpoint_filter_fn(
        timm_tiny.state_dict(), ref
    )
    assert max_diff(ours.pos_embed, filtered["pos_embed"]) <= 1e-6
    hw = (size, size) if isinstance(size, int) else size
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) <= TOL


def test_other_num_classes_keeps_backbone_new_head(tmp_path, timm_tiny, caplog):
    path = _write("safetensors", timm_tiny.state_dict(), timm_tiny, tmp_path)
    with caplog.at_level("INFO", logger="vitfas"):
        ours = vitfas.create_model(NAME, pretrained=path, num_classes=2).eval()
    assert ours.head.weight.shape == (2, 192)
    assert torch.equal(ours.blocks[11].mlp.fc2.weight, timm_tiny.blocks[11].mlp.fc2.weight)
    assert "head" in caplog.text and "1000" in caplog.text
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            timm_tiny.forward_head(timm_tiny.forward_features(x), pre_logits=True),
            atol=TOL,
        )


def test_hub_folder_config_sets_classes_and_size(tmp_path, randomise, max_diff):
    """A fine-tuned timm export (3 classes, 64 px, custom width) builds without a name."""
    ref = randomise(timm.create_model(
        NAME, num_classes=3, img_size=64, embed_dim=64, depth=2, num_heads=4
    ))
    timm.models.save_for_hf(ref, str(tmp_path / "ft"), safe_serialization=True)
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["architecture"] == NAME and cfg["num_classes"] == 3
    ours = vitfas.load_model(tmp_path / "ft")
    assert ours.config.img_size == (64, 64) and ours.config.num_classes == 3
    assert ours.config.embed_dim == 64 and ours.config.num_heads == 4
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) <= TOL


def test_timm_folder_outside_registry_and_unsupported_args(tmp_path, randomise, max_diff):
    """An architecture vitfas has no name for is rebuilt from model_args + shapes; one
    using features vitfas lacks (qk_norm) is refused with the argument named."""
    ref = randomise(timm.create_model(
        "vit_small_patch16_224", img_size=32, patch_size=8, embed_dim=48, depth=2,
        num_heads=6, num_classes=4, global_pool="avg", class_token=False, fc_norm=True,
    ))
    timm.models.save_for_hf(ref, str(tmp_path / "f"), safe_serialization=True)
    cfg_path = tmp_path / "f" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architecture"] = "vit_custom_patch8_32"
    cfg_path.write_text(json.dumps(cfg))
    ours = vitfas.load_model(tmp_path / "f")
    assert ours.config.num_heads == 6 and ours.config.global_pool == "avg"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) <= TOL
    cfg["model_args"]["qk_norm"] = True
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(vitfas.BadCheckpointError, match="qk_norm=True"):
        vitfas.load_model(tmp_path / "f")


def test_register_tokens_gap_without_prefix_positions(tmp_path, randomise, max_diff):
    """timm's vit_base_patch16_reg4_gap_256 family (4 registers, no class token, position
    embedding only on the patches, avg pool + fc_norm), shrunk, through a hub folder."""
    small = dict(embed_dim=64, depth=2, num_heads=4, img_size=64, num_classes=3)
    ref = randomise(timm.create_model("vit_base_patch16_reg4_gap_256", **small), seed=2)
    timm.models.save_for_hf(ref, str(tmp_path / "reg"), safe_serialization=True)
    ours = vitfas.load_model(tmp_path / "reg")
    assert ours.registry_name == "vit_base_patch16_reg4_gap_256"
    assert ours.config.reg_tokens == 4 and not ours.config.pos_embed_on_prefix
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) <= TOL
    # and resampled to 96 px exactly as timm does it
    ref96 = timm.create_model("vit_base_patch16_reg4_gap_256", **{**small, "img_size": 96},
                              pretrained=True, pretrained_cfg_overlay={
                                  "file": str(tmp_path / "reg" / "model.safetensors"),
                                  "num_classes": 3}).eval()
    ours96 = vitfas.create_model("vit_base_patch16_reg4_gap_256", **{**small, "img_size": 96},
                                 pretrained=tmp_path / "reg").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert max_diff(ours96(x), ref96(x)) <= TOL


def test_bare_timm_file_error_suggests_matching_names(tmp_path, timm_tiny):
    torch.save(timm_tiny.state_dict(), tmp_path / "w.pth")
    with pytest.raises(vitfas.BadCheckpointError) as e:
        vitfas.load_model(tmp_path / "w.pth")
    msg = str(e.value)
    assert "name='vit_tiny_patch16_224'" in msg and "num_heads=3" in msg
    assert "vit_tiny_patch16_384" in msg


def test_deit_distilled_checkpoint_resampled_like_timm(tmp_path) -> None:
    """Two prefix tokens (class + distillation) keep their positions when resampling."""
    timm = pytest.importorskip("timm")
    ref = timm.create_model("deit_tiny_distilled_patch16_224").eval()
    path = tmp_path / "deit.pth"
    torch.save(ref.state_dict(), path)
    ours = vitfas.create_model("deit_tiny_distilled_patch16_224", pretrained=path,
                               img_size=256).eval()
    ref256 = timm.create_model(
        "deit_tiny_distilled_patch16_224", img_size=256, pretrained=True,
        pretrained_cfg_overlay={"file": str(path), "num_classes": 1000},
    ).eval()
    x = torch.randn(1, 3, 256, 256)
    assert (ours(x) - ref256(x)).abs().max() <= 1e-5
