"""DeiT: distillation token and head, timm equivalence, registry, bundle round trip."""

from __future__ import annotations

import pytest
import torch
from model_test_helpers import randomise

from vitfas.models import create_model, list_models, model_config
from vitfas.models.deit import DeiTConfig, DistilledVisionTransformer
from vitfas.weights import check_and_load

timm = pytest.importorskip("timm")


def test_registry_has_all_deits() -> None:
    names = set(list_models("deit_*"))
    for size in ("tiny", "small", "base"):
        assert f"deit_{size}_patch16_224" in names
        assert f"deit_{size}_distilled_patch16_224" in names
    assert isinstance(model_config("deit_small_distilled_patch16_224"), DeiTConfig)


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
@pytest.mark.parametrize("distilled", [True, False])
def test_param_counts_equal_timm(size: str, distilled: bool) -> None:
    name = f"deit_{size}_{'distilled_' if distilled else ''}patch16_224"
    with torch.device("meta"):
        ours = create_model(name)
        ref = timm.create_model(name)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ours == n_ref
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())


def test_timm_distilled_tiny_loads_with_equal_logits() -> None:
    ref = timm.create_model("deit_tiny_distilled_patch16_224", num_classes=10)
    randomise(ref)
    ours = create_model("deit_tiny_distilled_patch16_224", num_classes=10)
    check_and_load(ours, ref.state_dict(), "timm deit_tiny_distilled_patch16_224")
    assert ours.num_prefix_tokens == 2
    x = torch.randn(1, 3, 224, 224)

    ref.eval()
    ours.eval()
    with torch.no_grad():
        r, o = ref(x), ours(x)
    assert o.shape == (1, 10)
    torch.testing.assert_close(o, r, rtol=0, atol=1e-5)
    # the two heads really differ, so the mean is a real test of both
    with torch.no_grad():
        f = ours.forward_features(x)
        assert (ours.head(f[:, 0]) - ours.head_dist(f[:, 1])).abs().max() > 1e-2

    # training mode, dropout 0: both heads, each equal to timm's
    ref.train()
    ref.set_distilled_training(True)
    ours.train()
    with torch.no_grad():
        r_cls, r_dist = ref(x)
        o_out = ours(x)
    assert isinstance(o_out, tuple) and len(o_out) == 2
    torch.testing.assert_close(o_out[0], r_cls, rtol=0, atol=1e-5)
    torch.testing.assert_close(o_out[1], r_dist, rtol=0, atol=1e-5)
    torch.testing.assert_close((o_out[0] + o_out[1]) / 2, o, rtol=0, atol=1e-5)

    ours.set_distilled_training(False)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), o, rtol=0, atol=1e-5)


def _tiny_cfg(**kw: object) -> DeiTConfig:
    base = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    base.update(kw)
    return DeiTConfig(**base)


def test_small_config_matches_timm_with_dynamic_size() -> None:
    """A reduced config built identically in both, at another input size (resampled pos)."""
    from timm.models.deit import VisionTransformerDistilled

    ref = VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                     num_heads=2, num_classes=3, dynamic_img_size=True)
    randomise(ref)
    ours = DistilledVisionTransformer(_tiny_cfg(dynamic_img_size=True))
    check_and_load(ours, ref.state_dict())
    ref.eval()
    ours.eval()
    for size in (32, 48):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


def test_return_attn_and_intermediates_count_the_dist_token() -> None:
    m = DistilledVisionTransformer(_tiny_cfg()).eval()
    x = torch.randn(1, 3, 32, 32)
    logits, attns = m(x, return_attn=True)
    assert logits.shape == (1, 3)
    assert len(attns) == 2 and attns[0].shape == (1, 2, 2 + 16, 2 + 16)
    grids = m.forward_intermediates(x, intermediates_only=True)
    assert grids[-1].shape == (1, 32, 4, 4)


def test_reset_classifier_replaces_both_heads() -> None:
    m = DistilledVisionTransformer(_tiny_cfg())
    m.reset_classifier(2)
    assert m.head.out_features == 2 and m.head_dist.out_features == 2
    assert m.config.num_classes == 2
    m.train()
    a, b = m(torch.randn(2, 3, 32, 32))
    assert a.shape == b.shape == (2, 2)
    m.reset_classifier(0)
    m.eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_config_rejects_impossible_combinations() -> None:
    with pytest.raises(ValueError, match="global_pool='token'"):
        _tiny_cfg(global_pool="avg", class_token=True)
    with pytest.raises(ValueError, match="register tokens"):
        _tiny_cfg(reg_tokens=2)
    assert _tiny_cfg(distilled=False, reg_tokens=2).num_prefix_tokens == 3
    cfg = _tiny_cfg()
    assert DeiTConfig.from_dict(cfg.to_dict()) == cfg


def test_bundle_round_trip(tmp_path) -> None:
    from vitfas.bundle import load_bundle, save_bundle

    m = create_model("deit_tiny_distilled_patch16_224", num_classes=2, img_size=32, depth=1)
    save_bundle(tmp_path / "b", m, class_names=["spoof", "live"], live_index=1)
    b = load_bundle(tmp_path / "b")
    assert isinstance(b.model, DistilledVisionTransformer)
    x = torch.randn(1, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(b.model(x), m(x))


def test_info_on_rel_pos_vit_rebuilds_index_buffers() -> None:
    """`vitfas info` builds on the meta device; index buffers must be rebuilt after
    to_empty() (relative position bias ViT and Swin)."""
    from vitfas.models.info import model_info

    info = model_info("vit_base_patch16_rel_224", img_size=(64, 64))
    assert info.activation_mib > 0 and info.output_shape == [1, 1000]
