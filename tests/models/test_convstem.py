"""The conv-stem ViT: CDC against its formula, shapes, gradients, attention, bundle, ONNX."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from vitfas.models import ConvStemVisionTransformer, ConvStemViTConfig, create_model, list_models
from vitfas.models.convstem import CentralDifferenceConv2d, ConvStem

TINY = dict(img_size=32, patch_size=4, stem_channels=(8, 16), embed_dim=32, depth=2,
            num_heads=4, num_classes=2)


def tiny(**kw: object) -> ConvStemVisionTransformer:
    torch.manual_seed(0)
    m = ConvStemVisionTransformer(ConvStemViTConfig(**{**TINY, **kw}))
    with torch.no_grad():  # non-trivial BatchNorm statistics and LayerNorms
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.normal_(1, 0.2)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.normal_(1, 0.3)
                mod.bias.normal_(0, 0.3)
    return m.eval()


def _cdc_by_hand(x: torch.Tensor, w: torch.Tensor, theta: float, stride: int) -> torch.Tensor:
    """``y(p0) = sum_n w(p_n) * (x(p0 + p_n) - theta * x(p0))`` with zero padding 1."""
    B, _, H, W = x.shape
    n_out = w.shape[0]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    y = torch.zeros(B, n_out, Ho, Wo, dtype=torch.float64)
    for i in range(Ho):
        for j in range(Wo):
            ci, cj = i * stride + 1, j * stride + 1  # the centre in padded coordinates
            centre = xp[:, :, ci, cj]  # [B, C]
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    diff = xp[:, :, ci + di, cj + dj] - theta * centre  # [B, C]
                    y[:, :, i, j] += diff @ w[:, :, di + 1, dj + 1].T
    return y


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("theta", [0.0, 0.7, 1.0])
def test_cdc_matches_its_formula(theta: float, stride: int) -> None:
    torch.manual_seed(3)
    conv = CentralDifferenceConv2d(2, 3, 3, stride=stride, theta=theta).double()
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    expect = _cdc_by_hand(x, conv.weight.detach(), theta, stride)
    torch.testing.assert_close(conv(x), expect, atol=1e-10, rtol=0)


def test_cdc_on_a_flat_image_is_the_plain_conv_scaled() -> None:
    """Away from the border a constant image c gives (1 - theta) * c * sum(w)."""
    conv = CentralDifferenceConv2d(1, 1, 3, theta=0.7)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))  # sum 36
    y = conv(torch.full((1, 1, 5, 5), 2.0))
    assert y[0, 0, 2, 2].item() == pytest.approx((1 - 0.7) * 2.0 * 36)
    with pytest.raises(ValueError, match="odd kernel"):
        CentralDifferenceConv2d(1, 1, 2)


def test_config_validation_and_roundtrip() -> None:
    with pytest.raises(ValueError, match=r"patch_size 8 must be 2\*\*len\(stem_channels\)"):
        ConvStemViTConfig(**{**TINY, "patch_size": 8})
    with pytest.raises(ValueError, match="stem must be conv|cdc"):
        ConvStemViTConfig(**{**TINY, "stem": "sobel"})
    with pytest.raises(ValueError, match="cdc_theta"):
        ConvStemViTConfig(**{**TINY, "cdc_theta": 1.5})
    cfg = ConvStemViTConfig(**TINY)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["stem_channels"] == [8, 16]
    assert ConvStemViTConfig.from_dict(d) == cfg


def test_registry_names_and_shapes() -> None:
    names = list_models("vit_*stem_*")
    assert {"vit_cdcstem_w64_p8_64", "vit_cdcstem_w128_p8_64", "vit_convstem_w128_p8_64",
            "vit_cdcstem_w128_p16_128", "vit_convstem_w128_p16_128"} <= set(names)
    m = create_model("vit_cdcstem_w128_p16_128").eval()
    assert m.patch_embed.patch_size == 16 and m.config.num_classes == 2
    x = torch.randn(2, 3, 128, 128)
    assert m.forward_features(x).shape == (2, 1 + 64, 128)
    assert m(x).shape == (2, 2)
    small = create_model("vit_cdcstem_w64_p8_64").eval()
    assert sum(p.numel() for p in small.parameters()) == 232_274
    assert small.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 65, 64)


@pytest.mark.parametrize("stem", ["conv", "cdc"])
def test_forward_pieces_and_stem_grid(stem: str) -> None:
    m = tiny(stem=stem)
    x = torch.randn(3, 3, 32, 32)
    grid = m.patch_embed(x)
    assert grid.shape == (3, 8, 8, 32)
    # the stem's own layers: two halvings, then the 1x1 projection
    h = x
    for layer in m.patch_embed.convs:
        h = layer(h)
    assert h.shape == (3, 16, 8, 8)
    torch.testing.assert_close(grid, m.patch_embed.proj(h).permute(0, 2, 3, 1))
    feats = m.forward_features(x)
    assert feats.shape == (3, 1 + 64, 32)
    torch.testing.assert_close(m.forward_head(feats), m(x))
    # eval mode: no sample sees another (BatchNorm uses running statistics)
    torch.testing.assert_close(m(x[:1]), m(x)[:1], atol=1e-5, rtol=1e-5)


def test_attention_maps_and_rollout() -> None:
    from model_test_helpers import assert_attention_and_explain

    m = tiny(reg_tokens=1)
    x = torch.randn(2, 3, 32, 32)
    assert_attention_and_explain(m, x, tokens=2 + 64, heads=4, depth=2, map_shape=(8, 8))
    inter = m.forward_intermediates(x, indices=1, intermediates_only=True)
    assert inter[0].shape == (2, 32, 8, 8)


@pytest.mark.parametrize("stem", ["conv", "cdc"])
def test_every_parameter_gets_a_gradient(stem: str) -> None:
    m = tiny(stem=stem).train()
    m(torch.randn(4, 3, 32, 32)).square().sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == [], f"no gradient for {no_grad}"
    assert any(n.startswith("patch_embed.convs.") for n, _ in m.named_parameters())


def test_dynamic_size_and_padding_and_errors() -> None:
    m = tiny()
    with pytest.raises(ValueError, match="expected input size 32x32, got 48x32"):
        m(torch.randn(1, 3, 48, 32))
    with pytest.raises(ValueError, match="not divisible by the stem's stride 4"):
        ConvStem(3, (8, 16), 32)(torch.randn(1, 3, 30, 32))
    dyn = tiny(dynamic_img_size=True, dynamic_img_pad=True)
    assert dyn.forward_features(torch.randn(2, 3, 30, 44)).shape == (2, 1 + 8 * 11, 32)
    with pytest.raises(TypeError, match="needs a ConvStemViTConfig"):
        ConvStemVisionTransformer(object())  # type: ignore[arg-type]


def test_info_lists_the_stem() -> None:
    from vitfas.models.info import model_info

    info = model_info("vit_cdcstem_w128_p8_64", batch_size=2)
    stages = dict(info.stages)
    assert stages["stem conv 0"] == [2, 32, 32, 32]
    assert stages["stem conv 2"] == [2, 128, 8, 8]
    assert stages["patch embedding"] == [2, 64, 128]
    assert stages["logits"] == [2, 2]
    assert info.params == sum(p.numel() for p in create_model("vit_cdcstem_w128_p8_64")
                              .parameters())


def test_bundle_roundtrip_and_onnx_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from model_test_helpers import assert_onnx_parity

    from vitfas.bundle import load_bundle, save_bundle

    m = tiny()
    m.registry_name = "vit_cdcstem_w128_p8_64"
    pre = {"img_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "colour_order": "RGB"}
    bdir = save_bundle(tmp_path / "b", m, class_names=["spoof", "live"], live_index=1,
                       preprocessing=pre)
    b = load_bundle(bdir)
    assert isinstance(b.model, ConvStemVisionTransformer)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
        torch.testing.assert_close(b.model(x), ref, atol=1e-6, rtol=0)
    assert_onnx_parity(b, x, ref, tmp_path / "m.onnx")


def test_colour_channels_match_skimage_and_pillow() -> None:
    from PIL import Image
    from skimage.color import rgb2hsv

    from vitfas.models.convstem import ColourChannels

    rng = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, 8, 9), generator=rng).to(torch.uint8)
    img[0, :, 0, 0] = 128  # a grey pixel: hue and saturation 0
    img[0, :, 0, 1] = 0  # black
    rgb = img.float() / 255
    hsv = ColourChannels.hsv(rgb)[0].permute(1, 2, 0).numpy()
    ref = rgb2hsv(img[0].permute(1, 2, 0).numpy())
    assert abs(hsv - ref).max() < 1e-5
    ycc = ColourChannels.ycbcr(rgb)[0].permute(1, 2, 0).numpy() * 255
    pil = Image.fromarray(img[0].permute(1, 2, 0).numpy()).convert("YCbCr")
    import numpy as np

    assert abs(ycc - np.asarray(pil, dtype=np.float64)).max() <= 1.0  # Pillow rounds to ints
    # the module: the normalised input passes through, then the extra channels in [-1, 1]
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = ColourChannels("hsv", mean, std)(x)
    assert out.shape == (1, 6, 8, 9)
    torch.testing.assert_close(out[:, :3], x)
    torch.testing.assert_close(out[:, 3:], torch.from_numpy(ref).permute(2, 0, 1)[None].float()
                               * 2 - 1, atol=1e-5, rtol=0)


@pytest.mark.parametrize("colour", ["rgb+hsv", "rgb+ycbcr"])
def test_colour_models_train_and_export(colour: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.export.onnx import export_onnx

    m = tiny(colour=colour).train()
    assert m.patch_embed.convs[0][0].in_channels == 6
    m(torch.rand(4, 3, 32, 32) * 2 - 1).square().sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []
    m.eval().registry_name = "vit_cdcstem_w128_p8_64"
    pre = {"img_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "colour_order": "RGB"}
    b = load_bundle(save_bundle(tmp_path / "b", m, class_names=["spoof", "live"],
                                live_index=1, preprocessing=pre))
    assert b.model.config.colour == colour
    rep = export_onnx(b, tmp_path / "m.onnx")
    assert rep["ok"] and rep["max_abs_diff"] <= 1e-4
    with pytest.raises(ValueError, match="colour must be"):
        ConvStemViTConfig(**{**TINY, "colour": "lab"})
