"""Adapters: identity at init, gradient scope, adapter-only checkpoints."""

from __future__ import annotations

import pytest
import torch

from vitfas.errors import BadConfigError
from vitfas.models import create_model
from vitfas.models.adapters import (
    add_adapters,
    count_parameters,
    scope_state_dict,
    set_trainable,
)

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=2)
NAMES = ["vit_small_patch16_224", "vit_base_patch16_rel_224", "vit_base_patch16_reg4_gap_256",
         "deit_tiny_distilled_patch16_224"]
SPECS = [
    {},
    {"positions": ["attn", "mlp"], "bottleneck": 8},
    {"kind": "parallel", "scale": 0.1, "bottleneck": 4},
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spec", SPECS, ids=["mlp", "attn+mlp", "parallel"])
def test_identity_at_init(name, spec):
    model = create_model(name, layer_scale_init=0.1, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    add_adapters(model, **spec)
    n_adapters = sum(1 for n, _ in model.named_parameters() if "adapter" in n)
    assert n_adapters == 4 * TINY["depth"] * len(spec.get("positions", ["mlp"]))
    assert torch.equal(model(x), ref)


def _perturb(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "adapter" in n:
                p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("scope", ["head", "adapters", "full"])
def test_gradient_only_reaches_scope(scope):
    model = create_model("vit_small_patch16_224", **TINY)
    add_adapters(model, positions=["attn", "mlp"], bottleneck=4)
    _perturb(model)  # so that every adapter parameter has a non-zero gradient path
    train, total = set_trainable(model, scope)
    assert (train, total) == count_parameters(model)
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    for n, p in model.named_parameters():
        expect = {
            "head": n.startswith("head."),
            "adapters": "adapter" in n or "norm" in n or n.startswith("head."),
            "full": True,
        }[scope]
        assert p.requires_grad == expect, n
        if expect:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n
    if scope == "adapters":
        assert train < 0.5 * total


def test_scope_errors():
    model = create_model("vit_small_patch16_224", **TINY)
    with pytest.raises(BadConfigError, match="no adapters"):
        set_trainable(model, "adapters")
    with pytest.raises(BadConfigError, match="one of"):
        set_trainable(model, "lora")
    with pytest.raises(BadConfigError, match="positions"):
        add_adapters(model, positions=["ffn"])
    with pytest.raises(BadConfigError, match="out of range"):
        add_adapters(model, blocks=[5])
    swin = create_model("swin_tiny_patch4_window7_224", img_size=32, window_size=2,
                        embed_dim=16, depths=(1, 1), num_heads=(1, 2))
    with pytest.raises(BadConfigError, match="SwinTransformer has no transformer blocks"):
        add_adapters(swin)


def test_adapter_only_weights_round_trip():
    base = create_model("vit_small_patch16_224", **TINY)
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = create_model("vit_small_patch16_224", **TINY)
    tuned.load_state_dict(base_sd)
    add_adapters(tuned, bottleneck=8, blocks=[-1])
    set_trainable(tuned, "adapters")
    _perturb(tuned)
    with torch.no_grad():
        tuned.head.weight.add_(1.0)
        tuned.blocks[0].norm1.weight.mul_(1.5)
    small = scope_state_dict(tuned, "adapters")
    assert not any(k.startswith("blocks.0.attn.") for k in small)
    assert sum(v.numel() for v in small.values()) < 0.2 * sum(
        v.numel() for v in tuned.state_dict().values())
    # rebuild: base weights + the small file, onto a fresh adapted model
    fresh = create_model("vit_small_patch16_224", **TINY)
    add_adapters(fresh, **tuned.adapter_spec)
    full = dict(base_sd)
    full.update(small)
    fresh.load_state_dict(full, strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(fresh.eval()(x), tuned.eval()(x))


def test_adapter_only_bundle_round_trip(tmp_path):
    weights = pytest.importorskip("vitfas.weights")
    if not hasattr(weights, "load_checkpoint"):
        pytest.skip("vitfas.weights.load_checkpoint not available yet (weights part)")
    from vitfas.bundle import load_bundle, save_bundle

    base = create_model("vit_small_patch16_224", **TINY)
    weights.save_model(base, tmp_path / "base")
    add_adapters(base, bottleneck=8)
    set_trainable(base, "adapters")
    _perturb(base)
    save_bundle(tmp_path / "bundle", base, class_names=["spoof", "live"], live_index=1,
                adapters=base.adapter_spec, state_dict=scope_state_dict(base, "adapters"),
                base_checkpoint=str(tmp_path / "base"))
    size = (tmp_path / "bundle" / "model.safetensors").stat().st_size
    assert size < 0.3 * (tmp_path / "base" / "model.safetensors").stat().st_size
    b = load_bundle(tmp_path / "bundle")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(b.model(x), base.eval()(x))
