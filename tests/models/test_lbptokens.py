"""The LBP-token ViT: planes against OpenCV, codes against skimage, histograms by hand,
shapes, gradients, attention / rollout, ONNX parity and a few training steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vitfas.models import LBPTokenVisionTransformer, LBPTokenViTConfig, create_model, list_models
from vitfas.models.lbptokens import (
    N_FEATURES,
    LBPTokenEmbed,
    cell_bounds,
    nri_uniform_label,
)

TINY = dict(img_size=16, patch_size=8, lbp_grid=2, embed_dim=32, depth=2, num_heads=4,
            num_classes=2, mlp_ratio=2.0)
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def tiny(**kw: object) -> LBPTokenVisionTransformer:
    torch.manual_seed(0)
    m = LBPTokenVisionTransformer(LBPTokenViTConfig(**{**TINY, **kw}))
    with torch.no_grad():  # non-trivial standardisation statistics and LayerNorms
        m.patch_embed.norm.running_mean.uniform_(0.0, 0.3)
        m.patch_embed.norm.running_var.uniform_(0.05, 0.2)
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.normal_(1, 0.3)
                mod.bias.normal_(0, 0.3)
    return m.eval()


def normalise(img: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """``[B, H, W, 3]`` uint8 -> ``[B, 3, H, W]`` normalised float32 (as the data loader)."""
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_planes_match_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    img[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0]]  # grey, red
    img[1] = img[1] // 64 * 64  # few levels: many ties between r, g and b
    emb = LBPTokenEmbed(32, 2, 8, MEAN, STD)
    planes = emb.planes(normalise(img)).numpy()
    assert planes.shape == (3, 6, 32, 32) and planes.dtype == np.float64
    for i in range(3):
        ycc = cv2.cvtColor(img[i], cv2.COLOR_RGB2YCrCb)
        hsv = cv2.cvtColor(img[i], cv2.COLOR_RGB2HSV)
        ref = np.stack([ycc[..., 0], ycc[..., 2], ycc[..., 1],
                        hsv[..., 0], hsv[..., 1], hsv[..., 2]]).astype(np.float64)
        diff = np.abs(planes[i] - ref)
        assert diff.max() <= 1.0, f"image {i}: planes differ by up to {diff.max()}"
        # OpenCV's fixed-point formulas are reproduced: in practice no pixel differs
        assert (diff == 0).mean() >= 0.999, f"image {i}: {(diff > 0).sum()} pixels differ"
    assert planes[:, 3].max() <= 179  # OpenCV's hue range


def _skimage_codes(planes: np.ndarray) -> np.ndarray:
    from skimage.feature import local_binary_pattern

    return np.stack([np.stack([local_binary_pattern(p, 8, 1, "nri_uniform")[1:-1, 1:-1]
                               for p in img]) for img in planes])


@pytest.mark.parametrize("levels", [256, 4])
def test_codes_match_skimage(levels: int) -> None:
    """Exact match wanted. The model repeats skimage's float64 bilinear interpolation of the
    diagonal neighbours with the same sample coordinates (offsets rounded to 5 decimals, per
    row ``(r + dr) - floor(r + dr)``) and the same operation order, so even ties (a
    neighbour equal to the centre, frequent with 4 grey levels) fall the same way. The
    threshold allows 0.1 % in case a platform contracts skimage's ``a * b + c`` to a fused
    multiply-add, which can flip the sign of an exact tie."""
    pytest.importorskip("skimage")
    rng = np.random.default_rng(levels)
    planes = (rng.integers(0, levels, (2, 6, 24, 24)) * (255 // (levels - 1))).astype(np.uint8)
    planes[0, 0] = 77  # a constant plane: every code is "all neighbours >= centre" (57)
    emb = LBPTokenEmbed(24, 2, 8)
    got = emb.codes(torch.from_numpy(planes.astype(np.float64))).numpy()
    ref = _skimage_codes(planes)
    assert got.shape == ref.shape == (2, 6, 22, 22)
    assert (ref[0, 0] == 57).all() and (got[0, 0] == 57).all()
    match = (got == ref).mean()
    assert match >= 0.999, f"{(got != ref).sum()} of {got.size} codes differ from skimage"
    assert set(np.unique(ref)) <= set(range(59))


def test_label_table_by_hand() -> None:
    # bits are neighbour 0 (right), 1 (up-right), 2 (up), ... counter-clockwise
    assert nri_uniform_label((0,) * 8) == 0
    assert nri_uniform_label((1,) * 8) == 57
    assert nri_uniform_label((1, 0, 1, 0, 0, 0, 0, 0)) == 58  # 4 changes: not uniform
    assert nri_uniform_label((1, 0, 0, 0, 0, 0, 0, 0)) == 1  # one 1 at 0: rot 0
    assert nri_uniform_label((0, 0, 0, 0, 0, 0, 0, 1)) == 2  # one 1 at 7: rot 8 - 7
    assert nri_uniform_label((1, 1, 1, 0, 0, 0, 0, 0)) == 1 + 2 * 8 + 0
    assert nri_uniform_label((1, 0, 0, 0, 0, 0, 1, 1)) == 1 + 2 * 8 + 2  # wraps: 3 - 1
    labels = {nri_uniform_label(tuple((c >> i) & 1 for i in range(8))) for c in range(256)}
    assert labels == set(range(59))


def test_histograms_of_hand_made_images() -> None:
    emb = LBPTokenEmbed(10, 2, 8)
    assert cell_bounds(8, 2) == [(0, 4), (4, 8)] and cell_bounds(62, 4) == [
        (0, 15), (15, 31), (31, 46), (46, 62)]
    # a constant image: every interior code of every plane is 57, in every cell
    flat = torch.full((1, 6, 10, 10), 100.0)
    hist = emb.histograms(emb.codes(flat))
    assert hist.shape == (1, 2, 2, N_FEATURES)
    expect = torch.zeros(N_FEATURES)
    expect[57::59] = 1.0
    torch.testing.assert_close(hist, expect.expand(1, 2, 2, -1))
    # one dark pixel at (3, 3) of plane 0 (Y) in a flat 100: the dark pixel sees all its
    # neighbours >= itself (57). Each neighbour sees it as a 0 bit, the axis neighbours also
    # through the two interpolated diagonals next to it (3 zero bits), the diagonal
    # neighbours through one bit only. skimage's labels of such runs: 1 + (ones - 1) * 8 +
    # rot, rot = ones - first_zero when bit 0 is set, else 8 - first_one.
    img = torch.full((1, 6, 10, 10), 100.0)
    img[0, 0, 3, 3] = 0.0
    codes = emb.codes(img)
    c0 = codes[0, 0]  # interior coordinates are image coordinates - 1
    by_hand = {
        (2, 2): 57,  # the dark pixel
        (2, 3): 1 + 4 * 8 + (5 - 3),  # right of it: bits 3, 4, 5 are 0 -> 35
        (1, 2): 1 + 4 * 8 + (5 - 5),  # above: bits 5, 6, 7 are 0 -> 33
        (2, 1): 1 + 4 * 8 + (8 - 2),  # left: bits 7, 0, 1 are 0 -> 39
        (3, 2): 1 + 4 * 8 + (5 - 1),  # below: bits 1, 2, 3 are 0 -> 37
        (1, 3): 1 + 6 * 8 + (7 - 5),  # up-right: bit 5 is 0 -> 51
        (1, 1): 1 + 6 * 8 + (7 - 7),  # up-left: bit 7 -> 49
        (3, 1): 1 + 6 * 8 + (7 - 1),  # down-left: bit 1 -> 55
        (3, 3): 1 + 6 * 8 + (7 - 3),  # down-right: bit 3 -> 53
    }
    for (i, j), label in by_hand.items():
        assert c0[i, j].item() == label, (i, j, c0[i, j].item(), label)
    assert (c0 == 57).sum() == 64 - 8
    assert (codes[0, 1:] == 57).all()
    hist = emb.histograms(codes)[0]
    # the 3x3 block lies in the top-left 4x4 cell of the 8x8 interior: 16 pixels
    top_left = hist[0, 0, :59]
    assert top_left[57].item() == pytest.approx(8 / 16)
    for label in (33, 35, 37, 39, 49, 51, 53, 55):
        assert top_left[label].item() == pytest.approx(1 / 16)
    assert hist[1, 1, 57].item() == 1.0 and hist[0, 1, 57].item() == 1.0
    torch.testing.assert_close(hist.reshape(2, 2, 6, 59).sum(-1), torch.ones(2, 2, 6))


def test_embedding_end_to_end_equals_the_baseline_descriptor() -> None:
    """grid 1: the single token's histogram is the LBP baseline's colour descriptor."""
    pytest.importorskip("cv2")
    from vitfas.baselines.lbp import LBPConfig, lbp_features

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    emb = LBPTokenEmbed(20, 1, 8, MEAN, STD)
    hist = emb.histograms(emb.codes(emb.planes(normalise(img))))
    cfg = LBPConfig(features="color", size=20)
    for i in range(2):
        np.testing.assert_allclose(hist[i, 0, 0].numpy(), lbp_features(img[i], cfg),
                                   atol=1e-6)
    # grid 3 on the 18x18 interior of a 20 px crop (cells of 6 px) and grid 4 on the 22x22 interior of a
    # 24 px crop (uneven cells 5, 6, 5, 6): the tokens are the baseline's --cells descriptor,
    # reordered from (plane, cell) to (cell, plane)
    for size, grid in ((20, 3), (24, 4)):
        img = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
        emb = LBPTokenEmbed(size, grid, 8, MEAN, STD)
        hist = emb.histograms(emb.codes(emb.planes(normalise(img))))
        cfg = LBPConfig(features="color", size=size, cells=grid)
        for i in range(2):
            base = lbp_features(img[i], cfg).reshape(6, grid, grid, 59).transpose(1, 2, 0, 3)
            np.testing.assert_allclose(hist[i].numpy(), base.reshape(grid, grid, 6 * 59),
                                       atol=1e-6)


def test_config_validation_and_roundtrip() -> None:
    with pytest.raises(ValueError, match="multiple of lbp_grid 3"):
        LBPTokenViTConfig(**{**TINY, "lbp_grid": 3})
    with pytest.raises(ValueError, match="must be square"):
        LBPTokenViTConfig(**{**TINY, "img_size": (16, 32)})
    with pytest.raises(ValueError, match="fixed img_size"):
        LBPTokenViTConfig(**{**TINY, "dynamic_img_size": True})
    cfg = LBPTokenViTConfig(**{**TINY, "patch_size": 3})
    assert cfg.patch_size == 8 and cfg.grid_size == (2, 2)  # follows img_size / lbp_grid
    d = json.loads(json.dumps(cfg.to_dict()))
    assert LBPTokenViTConfig.from_dict(d) == cfg
    with pytest.raises(TypeError, match="needs an LBPTokenViTConfig"):
        LBPTokenVisionTransformer(object())  # type: ignore[arg-type]


def test_registry_names_shapes_and_bad_input() -> None:
    assert {"vit_lbptok_g2_64", "vit_lbptok_g4_64"} <= set(list_models("vit_lbptok_*"))
    for name, g in (("vit_lbptok_g2_64", 2), ("vit_lbptok_g4_64", 4)):
        m = create_model(name).eval()
        c = m.config
        assert (c.embed_dim, c.depth, c.num_heads, c.mlp_ratio, c.global_pool) == (
            64, 2, 4, 2.0, "token")
        x = torch.randn(3, 3, 64, 64)
        assert m.patch_embed(x).shape == (3, g, g, 64)
        assert m.patch_embed.tokens(x).shape == (3, g * g, 64)
        assert m.forward_features(x).shape == (3, 1 + g * g, 64)
        assert m(x).shape == (3, 2)
        torch.testing.assert_close(m(x[:1]), m(x)[:1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected input size 64x64, got 32x32"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected \[B, 3, 64, 64\], got \[1, 1, 64, 64\]"):
        m.patch_embed(torch.randn(1, 1, 64, 64))


def test_every_parameter_gets_a_gradient_and_none_reaches_the_input() -> None:
    m = tiny().train()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    m(x).square().sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == [], f"no gradient for {no_grad}"
    assert {n for n, _ in m.named_parameters() if n.startswith("patch_embed.")} == {
        "patch_embed.proj.weight", "patch_embed.proj.bias"}
    assert x.grad is None  # the LBP codes are a step function of the image


def test_attention_maps_and_rollout() -> None:
    from model_test_helpers import assert_attention_and_explain

    m = tiny(img_size=32, lbp_grid=4)
    assert_attention_and_explain(m, torch.randn(2, 3, 32, 32), tokens=1 + 16, heads=4,
                                 depth=2, map_shape=(4, 4))


def test_info_lists_the_model() -> None:
    from vitfas.models.info import model_info

    info = model_info("vit_lbptok_g4_64", batch_size=2)
    stages = dict(info.stages)
    assert stages["patch embedding"] == [2, 16, 64]
    assert stages["logits"] == [2, 2]
    assert info.params == sum(p.numel() for p in create_model("vit_lbptok_g4_64").parameters())
    # built on the meta device, then materialised: the tables are recomputed
    ref = tiny()
    with torch.device("meta"):
        m = LBPTokenVisionTransformer(ref.config)
    m = m.to_empty(device="cpu")
    for mod in m.modules():
        if hasattr(mod, "init_non_persistent_buffers"):
            mod.init_non_persistent_buffers()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(m.eval()(x), ref(x))
    # half precision elsewhere leaves the LBP tables exact
    codes = ref.patch_embed.codes(ref.patch_embed.planes(x))
    half = tiny().half().patch_embed
    assert torch.equal(half.codes(half.planes(x)), codes)


@pytest.mark.timeout(300)
def test_bundle_roundtrip_and_onnx_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from model_test_helpers import assert_onnx_parity

    from vitfas.bundle import load_bundle, save_bundle

    m = tiny(input_mean=MEAN, input_std=STD)
    m.registry_name = "vit_lbptok_g2_64"
    pre = {"img_size": [16, 16], "mean": list(MEAN), "std": list(STD), "colour_order": "RGB"}
    b = load_bundle(save_bundle(tmp_path / "b", m, class_names=["spoof", "live"],
                                live_index=1, preprocessing=pre))
    assert isinstance(b.model, LBPTokenVisionTransformer)
    assert b.model.config.input_mean == MEAN
    rng = np.random.default_rng(5)
    x = normalise(rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8))
    with torch.no_grad():
        ref = m(x)
        torch.testing.assert_close(b.model(x), ref, atol=1e-6, rtol=0)
    assert_onnx_parity(b, x, ref, tmp_path / "m.onnx")


def test_trains_on_made_up_data() -> None:
    """Live: smooth colour gradients; spoof: the same under strong per-pixel noise. A few
    Adam steps must lower the loss clearly."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float64)
    imgs, labels = [], []
    for k in range(32):
        a = rng.uniform(-3, 3, (2, 3))
        img = rng.uniform(60, 190, 3) + xx[..., None] * a[0] + yy[..., None] * a[1]
        if k % 2 == 0:
            img = img + rng.normal(0, 40, img.shape)
        imgs.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(1 - k % 2)
    x, y = normalise(np.stack(imgs)), torch.tensor(labels)
    m = LBPTokenVisionTransformer(LBPTokenViTConfig(**{**TINY, "input_mean": MEAN,
                                                      "input_std": STD})).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    m.eval()
    with torch.no_grad():
        assert (m(x).argmax(1) == y).float().mean() >= 0.9
