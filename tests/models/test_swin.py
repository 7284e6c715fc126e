"""Swin Transformer: parameter counts and logits equal to timm's, masks, config, backbone API."""

from __future__ import annotations

import pytest
import torch
from model_test_helpers import randomise
from torch import nn

from vitfas.models import create_model, list_models
from vitfas.models.swin import (
    SwinConfig,
    SwinTransformer,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from vitfas.weights import check_and_load

timm = pytest.importorskip("timm")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("swin_tiny_patch4_window7_224", 28_288_354),
        ("swin_small_patch4_window7_224", None),
        ("swin_base_patch4_window7_224", None),
    ],
)
def test_param_counts_equal_timm(name: str, expected: int | None) -> None:
    with torch.device("meta"):
        ours = create_model(name)
        ref = timm.create_model(name)
    n_ours = sum(p.numel() for p in ours.parameters())
    assert n_ours == sum(p.numel() for p in ref.parameters())
    if expected is not None:
        assert n_ours == expected
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())
    assert name in list_models("swin_*")


def _pair_models(**kw: object) -> tuple[nn.Module, SwinTransformer]:
    args = dict(img_size=64, patch_size=4, embed_dim=32, depths=(2, 2, 2, 2),
                num_heads=(1, 2, 4, 8), window_size=4, num_classes=5)
    args.update(kw)
    ref = timm.models.swin_transformer.SwinTransformer(**args)
    randomise(ref)
    ours = SwinTransformer(SwinConfig(**args))
    check_and_load(ours, ref.state_dict(), "timm SwinTransformer")
    return ref.eval(), ours.eval()


@pytest.mark.parametrize(
    "kw",
    [
        {},  # grids 16, 8, 4, 2: shifted windows in stages 0-1, window clamped in stage 3
        {"img_size": 48},  # stage-1 grid 6 is padded to 8 with shifted windows; odd merge
        {"img_size": (64, 96), "window_size": (4, 2)},  # non-square image and window
    ],
    ids=["64px", "48px-padding", "non-square"],
)
def test_small_config_logits_equal_timm(kw: dict) -> None:
    ref, ours = _pair_models(**kw)
    size = ours.config.img_size
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        r, o = ref(x), ours(x)
        torch.testing.assert_close(o, r, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), pre_logits=True),
                                   ref.forward_head(ref.forward_features(x), pre_logits=True),
                                   rtol=0, atol=1e-5)
    assert o.shape == (1, 5)


def test_shift_mask_is_what_matters() -> None:
    """Dropping the shifted-window mask changes the output: the equivalence test sees it."""
    ref, ours = _pair_models()
    x = torch.randn(1, 3, 64, 64)
    blk = ours.layers[0].blocks[1]
    assert blk.shift == (2, 2) and blk.attn_mask is not None
    with torch.no_grad():
        good = ours(x)
        blk.attn_mask = None
        bad = ours(x)
    assert (good - bad).abs().max() > 1e-3
    torch.testing.assert_close(good, ref(x), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_swin_tiny_full_size_logits_equal_timm() -> None:
    ref = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10)
    randomise(ref)
    ours = create_model("swin_tiny_patch4_window7_224", num_classes=10)
    check_and_load(ours, ref.state_dict(), "timm swin_tiny_patch4_window7_224")
    ref.eval()
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_window_partition_round_trip_and_mask() -> None:
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, (4, 4))
    assert w.shape == (2 * 2 * 3, 16, 3)
    torch.testing.assert_close(w[0].reshape(4, 4, 3), x[0, :4, :4])
    torch.testing.assert_close(window_reverse(w, (4, 4), 8, 12), x)
    mask = shifted_window_mask((8, 8), (4, 4), (2, 2))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    # bottom-right window: four regions of 2x2 tokens, each attends to its own 4 tokens
    assert ((mask[3] == 0).sum(dim=1) == 4).all()


def test_backbone_api_and_return_attn() -> None:
    m = SwinTransformer(SwinConfig(img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                                   num_heads=(1, 2, 2, 4), window_size=4, num_classes=3))
    assert m.num_features == 128 and m.num_prefix_tokens == 0
    x = torch.randn(2, 3, 64, 64)
    f = m.forward_features(x)
    assert f.shape == (2, 2, 2, 128)
    assert m.forward_head(f).shape == (2, 3)
    assert m.forward_head(f, pre_logits=True).shape == (2, 128)
    logits, attns = m.eval()(x, return_attn=True)
    assert len(attns) == 8
    assert attns[0].shape == (2 * 16, 1, 16, 16)
    torch.testing.assert_close(attns[0].sum(-1), torch.ones(32, 1, 16))
    torch.testing.assert_close(logits, m(x))
    _, stages = m.forward_intermediates(x)
    assert [s.shape[1:] for s in stages] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    m.reset_classifier(2)
    assert m(x).shape == (2, 2) and m.config.num_classes == 2
    m.train()
    m.set_grad_checkpointing()
    m(x).sum().backward()
    assert m.patch_embed.proj.weight.grad is not None
    assert all("relative_position_bias_table" in n for n in m.no_weight_decay())


def test_bad_input_and_config_messages() -> None:
    m = SwinTransformer(SwinConfig(img_size=32, embed_dim=8, depths=(1, 1), num_heads=(1, 1),
                                   window_size=4, num_classes=2))
    with pytest.raises(ValueError, match="expected input size 32x32, got 48x48"):
        m(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="3 input channels"):
        m(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="not divisible by its"):
        SwinConfig(embed_dim=10, num_heads=(3, 6, 12, 24))
    with pytest.raises(ValueError, match="one entry per stage"):
        SwinConfig(depths=(2, 2), num_heads=(3, 6, 12))
    cfg = SwinConfig(img_size=(64, 96), window_size=(4, 2))
    assert SwinConfig.from_dict(cfg.to_dict()) == cfg


def test_bundle_round_trip(tmp_path) -> None:
    from vitfas.bundle import load_bundle, save_bundle

    m = create_model("swin_tiny_patch4_window7_224", num_classes=2, img_size=64,
                     embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    save_bundle(tmp_path / "b", m, class_names=["spoof", "live"], live_index=1)
    b = load_bundle(tmp_path / "b")
    assert isinstance(b.model, SwinTransformer)
    x = torch.randn(1, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(b.model(x), m(x))


def test_original_microsoft_layout_converts_and_loads() -> None:
    from vitfas.weights.swin import convert_swin_state_dict, is_original_swin_layout

    ref, ours = _pair_models()
    timm_sd = ref.state_dict()
    # rebuild the original layout: merging at the end of the previous stage, head.*, buffers
    original = {}
    for k, v in timm_sd.items():
        m = k.split(".")
        if k.startswith("layers.") and m[2] == "downsample":
            k = ".".join(["layers", str(int(m[1]) - 1), *m[2:]])
        k = k.replace("head.fc.", "head.")
        original[k] = v.clone()
    original["layers.0.blocks.1.attn_mask"] = torch.zeros(16, 16, 16)
    original["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16).long()
    assert is_original_swin_layout(original) and not is_original_swin_layout(timm_sd)

    fresh = SwinTransformer(ours.config).eval()
    check_and_load(fresh, convert_swin_state_dict({"model": original}), "original.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ref(x), rtol=0, atol=1e-5)
    assert convert_swin_state_dict(timm_sd).keys() == timm_sd.keys()


def test_info_reports_swin_stages_and_flops() -> None:
    from vitfas.models.info import model_info

    info = model_info("swin_tiny_patch4_window7_224", batch_size=2)
    assert info.params == 28_288_354
    assert round(info.gflops / 2, 1) == 4.5  # the paper's 4.5 G multiply-adds
    stages = dict(info.stages)
    assert stages["stage 0"] == [2, 56 * 56, 96]
    assert stages["stage 3"] == [2, 7 * 7, 768]
    assert stages["logits"] == [2, 1000]
    assert info.activation_mib > 0


@pytest.mark.slow
def test_onnx_export_with_dynamic_batch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    m = SwinTransformer(SwinConfig(img_size=32, embed_dim=16, depths=(2, 2), num_heads=(2, 2),
                                   window_size=4, num_classes=2)).eval()
    path = tmp_path / "swin.onnx"
    batch = torch.export.Dim("batch", min=1, max=256)
    torch.onnx.export(m, (torch.randn(2, 3, 32, 32),), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_shapes={"x": {0: batch}})
    sess = ort.InferenceSession(str(path))
    x = torch.randn(3, 3, 32, 32)  # another batch size than at export
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), m(x), rtol=0, atol=1e-5)
