"""The ViT model: shapes, position encodings, attention switch, intermediates, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vitfas
from vitfas.models import (
    PatchEmbed,
    RelativePositionBias,
    VisionTransformer,
    ViTConfig,
    create_model,
    list_models,
    model_config,
    resample_pos_embed,
    sincos_2d,
    vit_config,
)
from vitfas.models.pos_embed import relative_position_index

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5)


def tiny(**kw) -> VisionTransformer:
    cfg = ViTConfig(**{**TINY, **kw})
    m = VisionTransformer(cfg)
    # non-trivial LayerNorm parameters so that norms cannot hide mistakes
    for mod in m.modules():
        if isinstance(mod, nn.LayerNorm):
            nn.init.normal_(mod.weight, 1.0, 0.3)
            nn.init.normal_(mod.bias, 0.0, 0.3)
    return m.eval()


PARAM_COUNTS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch32_224": 88_224_232,
    "vit_large_patch16_224": 304_326_632,
    "vit_huge_patch14_224": 632_045_800,
}


@pytest.mark.parametrize("name,count", PARAM_COUNTS.items())
def test_parameter_counts(name: str, count: int) -> None:
    with torch.device("meta"):
        m = create_model(name)
    assert m.config.img_size == (224, 224) and m.config.num_classes == 1000
    assert sum(p.numel() for p in m.parameters()) == count


def test_registry_listing_and_errors() -> None:
    assert set(PARAM_COUNTS) <= set(list_models("vit_*"))
    assert list_models("vit_*patch32*") == sorted(list_models("vit_*patch32*"))
    assert all("patch32" in n for n in list_models("vit_*patch32*"))
    with pytest.raises(vitfas.BadConfigError, match="did you mean"):
        create_model("vit_tiny_patch16_22")
    with pytest.raises(vitfas.BadConfigError, match="unknown config keys.*embed_dimm"):
        model_config("vit_tiny_patch16_224", embed_dimm=3)
    m = create_model("vit_tiny_patch16_224", num_classes=2, img_size=(64, 96), depth=1)
    assert m.config.img_size == (64, 96) and m.head.out_features == 2 and len(m.blocks) == 1
    assert m.registry_name == "vit_tiny_patch16_224"


def test_variant_strings() -> None:
    c = vit_config("B/16")
    assert (c.embed_dim, c.depth, c.num_heads, c.patch_size) == (768, 12, 12, 16)
    assert vit_config("H/14", img_size=224).grid_size == (16, 16)
    with pytest.raises(ValueError, match="B/16"):
        vit_config("base16")


def test_config_validation_and_roundtrip() -> None:
    c = ViTConfig(**TINY)
    assert ViTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown ViTConfig keys"):
        ViTConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        ViTConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="height 30 is not divisible by patch size 8"):
        ViTConfig(**{**TINY, "img_size": (30, 32)})
    with pytest.raises(ValueError, match="class_token"):
        ViTConfig(**TINY, class_token=False)


def test_patch_embed_non_square_and_errors() -> None:
    pe = PatchEmbed(8, 3, 16)
    out = pe(torch.randn(2, 3, 16, 40))
    assert out.shape == (2, 2, 5, 16)
    # the conv is the same linear map on every flattened patch
    x = torch.randn(1, 3, 16, 40)
    patch = x[0, :, 8:16, 24:32].reshape(-1)
    expect = pe.proj.weight.reshape(16, -1) @ patch + pe.proj.bias
    torch.testing.assert_close(pe(x)[0, 1, 3], expect, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"input size 20x40 is not divisible by the patch size 8"):
        pe(torch.randn(1, 3, 20, 40))
    padded = PatchEmbed(8, 3, 16, pad=True)
    assert padded(torch.randn(1, 3, 20, 41)).shape == (1, 3, 6, 16)


def test_forward_shapes_and_pieces() -> None:
    m = tiny()
    x = torch.randn(3, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape == (3, 1 + 16, 32)
    assert m.forward_head(feats, pre_logits=True).shape == (3, 32)
    torch.testing.assert_close(m.forward_head(feats), m(x))
    assert m(x).shape == (3, 5)


def test_samples_do_not_attend_across_the_batch() -> None:
    """The classic nn.MultiheadAttention(batch_first=False) bug mixes samples."""
    m = tiny()
    x = torch.randn(4, 3, 32, 32)
    y = m(x)
    x2 = x.clone()
    x2[1:] = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(m(x2)[0], y[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(m(x[:1])[0], y[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [
    {}, {"pos_embed": "sincos"}, {"pos_embed": "rel"}, {"reg_tokens": 2},
    {"global_pool": "avg", "class_token": False, "reg_tokens": 4, "pos_embed_on_prefix": False},
    {"layer_scale_init": 1e-5}, {"gelu": "tanh", "qkv_bias": False},
])
def test_attention_switch_agrees_and_shapes(kw: dict) -> None:
    m = tiny(**kw)
    x = torch.randn(2, 3, 32, 32)
    plain = m(x)
    logits, attns = m(x, return_attn=True)
    assert (plain - logits).abs().max() <= 1e-5
    n = m.num_prefix_tokens + 16
    assert len(attns) == 2
    for a in attns:
        assert a.shape == (2, 4, n, n)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, n), atol=1e-5, rtol=0)
    feats, attns2 = m.forward_features(x, return_attn=True)
    assert (feats - m.forward_features(x)).abs().max() <= 1e-5
    assert len(attns2) == 2


def test_attention_weights_are_the_real_softmax() -> None:
    """Recompute block 0's attention by hand from its weights."""
    m = tiny()
    x = torch.randn(1, 3, 32, 32)
    _, attns = m(x, return_attn=True)
    tokens, _ = m._embed(x)
    blk = m.blocks[0]
    h = blk.norm1(tokens)
    q, k, _ = blk.attn.qkv(h).reshape(1, -1, 3, 4, 8).permute(2, 0, 3, 1, 4)
    manual = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(attns[0], manual, atol=1e-6, rtol=1e-5)


def test_every_parameter_gets_a_gradient() -> None:
    for kw in ({}, {"pos_embed": "rel", "reg_tokens": 1, "layer_scale_init": 0.1}):
        m = tiny(**kw).train()
        m(torch.randn(2, 3, 32, 32)).square().sum().backward()
        no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
        assert no_grad == [], f"no gradient for {no_grad}"


def test_grad_checkpointing_same_outputs_and_grads() -> None:
    torch.manual_seed(1)
    m = tiny(drop_path_rate=0.2).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(5)
    y1 = m(x)
    y1.sum().backward()
    g1 = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing()
    torch.manual_seed(5)
    y2 = m(x)
    y2.sum().backward()
    torch.testing.assert_close(y1, y2, atol=1e-6, rtol=0)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g1[n], atol=1e-6, rtol=1e-5, msg=n)


def test_forward_intermediates() -> None:
    m = tiny(depth=3, reg_tokens=1)
    x = torch.randn(2, 3, 32, 64)
    with pytest.raises(ValueError, match="input size"):
        m.forward_intermediates(x)
    m = tiny(depth=3, reg_tokens=1, dynamic_img_size=True)
    final, inter = m.forward_intermediates(x, indices=2, norm=True)
    assert len(inter) == 2 and inter[0].shape == (2, 32, 4, 8)
    feats = m.forward_features(x)
    torch.testing.assert_close(final, feats)
    torch.testing.assert_close(inter[-1].flatten(2).transpose(1, 2), feats[:, 2:])
    only = m.forward_intermediates(x, indices=[0, -1], output_fmt="NLC",
                                   return_prefix_tokens=True, intermediates_only=True)
    assert [o[0].shape for o in only] == [(2, 32, 32)] * 2
    assert only[0][1].shape == (2, 2, 32)
    early = m.forward_intermediates(x, indices=[0], intermediates_only=True, stop_early=True)
    torch.testing.assert_close(early[0], m.forward_intermediates(x, indices=[0])[1][0])
    with pytest.raises(ValueError, match="out of range"):
        m.forward_intermediates(x, indices=[3])


@pytest.mark.parametrize("bad,msg", [
    (torch.randn(3, 32, 32), r"4-D image batch \[B, 3, H, W\], got a 3-D tensor"),
    (torch.randn(1, 1, 32, 32), "expected 3 input channels, got 1"),
    (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "floating-point.*uint8"),
    (torch.randn(1, 3, 48, 32), "expected input size 32x32, got 48x32"),
])
def test_bad_input_errors(bad: torch.Tensor, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        tiny()(bad)


def test_dynamic_size_all_position_kinds() -> None:
    for kind in ("learn", "sincos", "rel"):
        m = tiny(pos_embed=kind, dynamic_img_size=True)
        assert m(torch.randn(1, 3, 48, 80)).shape == (1, 5)
        # at the built size, dynamic and static models agree
        s = tiny(pos_embed=kind)
        s.load_state_dict(m.state_dict())
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(m(x), s(x))


def test_resample_pos_embed_kernels_match_interpolate() -> None:
    pos = torch.randn(1, 1 + 4 * 6, 8)
    for mode, aa in (("bicubic", True), ("bicubic", False), ("bilinear", False)):
        out = resample_pos_embed(pos, (3, 5), (4, 6), 1, mode, aa)
        grid = pos[:, 1:].reshape(1, 4, 6, 8).permute(0, 3, 1, 2)
        ref = torch.nn.functional.interpolate(grid, size=(3, 5), mode=mode, antialias=aa,
                                              align_corners=False)
        assert out.shape == (1, 16, 8)
        torch.testing.assert_close(out[:, 0], pos[:, 0])
        torch.testing.assert_close(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 15, 8))
    assert resample_pos_embed(pos, (4, 6), (4, 6)) is pos
    with pytest.raises(ValueError, match="not a square"):
        resample_pos_embed(pos, (5, 5))


def test_sincos_matches_hand_formula() -> None:
    emb = sincos_2d((2, 3), 8)
    assert emb.shape == (6, 8)
    # D=8: omega = [1, 1/100]; channels = [sin(w*o), cos(w*o), sin(h*o), cos(h*o)]
    h, w = 1, 2  # token index h*3 + w = 5
    o = torch.tensor([1.0, 0.01])
    expect = torch.cat([torch.sin(w * o), torch.cos(w * o), torch.sin(h * o), torch.cos(h * o)])
    torch.testing.assert_close(emb[5], expect)


def test_relative_position_bias_index_and_lookup() -> None:
    idx = relative_position_index((2, 2), num_prefix_tokens=1)
    assert idx.shape == (5, 5)
    # grid token (0,0) -> (1,1): offset (-1,-1) -> ((-1+1)*3 + (-1+1)) = 0
    assert idx[1, 4] == 0 and idx[4, 1] == 8 and idx[1, 1] == 4
    assert idx[0, 1] == 9 and idx[1, 0] == 10 and idx[0, 0] == 11
    rpb = RelativePositionBias((2, 2), num_heads=2)
    nn.init.normal_(rpb.table)
    bias = rpb()
    assert bias.shape == (1, 2, 5, 5)
    assert bias[0, 1, 2, 3] == rpb.table[idx[2, 3], 1]
    assert rpb((3, 4)).shape == (1, 2, 13, 13)


def test_matches_timm_avg_pool_register_tokens() -> None:
    timm = pytest.importorskip("timm")
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5,
        reg_tokens=4, no_embed_class=True, class_token=False, global_pool="avg",
    ).eval()
    for mod in ref.modules():
        if isinstance(mod, nn.LayerNorm):
            nn.init.normal_(mod.weight, 1.0, 0.3)
            nn.init.normal_(mod.bias, 0.0, 0.3)
    ours = tiny(reg_tokens=4, pos_embed_on_prefix=False, class_token=False, global_pool="avg")
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert (ref(x) - ours(x)).abs().max() <= 1e-5


def test_torch_compile_fullgraph_matches_eager() -> None:
    m = tiny()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(m, fullgraph=True)
    assert (compiled(x) - m(x)).abs().max() <= 1e-5


def test_reset_classifier() -> None:
    m = tiny()
    m.reset_classifier(2)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 2) and m.config.num_classes == 2
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 32)
