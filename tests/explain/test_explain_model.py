"""explain() on real (tiny) ViTs: token layouts, batching, registers, distillation token."""

from __future__ import annotations

import pytest
import torch
from explain_helpers import tiny_config, tiny_deit
from torch import nn

from vitfas.errors import BadConfigError
from vitfas.explain import (
    attention_and_gradients,
    explain,
    grad_rollout,
    layer_head_maps,
    readout,
    rollout,
    to_pixels,
    token_layout,
)
from vitfas.models import VisionTransformer


def _attns(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return model(x, return_attn=True)[1]


def test_attention_map_with_register_tokens_has_the_right_grid() -> None:
    model = VisionTransformer(tiny_config(reg_tokens=4)).eval()
    x = torch.randn(3, 3, 32, 48)
    e = explain(model, x, "attention", layer=1, head=0)
    lay = e.layout
    assert lay.num_prefix_tokens == 5 and lay.grid_size == (4, 6) and lay.cls_index == 0
    assert e.maps.shape == (3, 4, 6)
    # the class token's row, keys after the 5 prefix tokens, row-major over the 4x6 grid
    want = _attns(model, x)[1][:, 0, 0, 5:].reshape(3, 4, 6)
    torch.testing.assert_close(e.maps, want)
    # and the rollout uses the same slicing
    r = explain(model, x, "rollout")
    torch.testing.assert_close(r.maps, rollout(_attns(model, x))[:, 0, 5:].reshape(3, 4, 6))


def test_no_class_token_uses_the_mean_over_patch_queries() -> None:
    cfg = tiny_config(class_token=False, global_pool="avg", reg_tokens=2,
                      pos_embed_on_prefix=False)
    model = VisionTransformer(cfg).eval()
    x = torch.randn(2, 3, 32, 48)
    e = explain(model, x, "rollout", discard_ratio=0.5)
    assert e.query == "mean" and e.layout.cls_index is None and e.maps.shape == (2, 4, 6)
    R = rollout(_attns(model, x), discard_ratio=0.5, keep_tokens=())
    torch.testing.assert_close(e.maps, R[:, 2:, 2:].mean(1).reshape(2, 4, 6))
    with pytest.raises(BadConfigError, match="no class token"):
        explain(model, x, query="cls")


def test_distillation_token() -> None:
    model = tiny_deit().eval()
    x = torch.randn(2, 3, 32, 48)
    lay = token_layout(model, x.shape)
    assert (lay.num_prefix_tokens, lay.cls_index, lay.dist_index) == (2, 0, 1)
    attns = _attns(model, x)
    assert attns[0].shape[-1] == 2 + 24
    e = explain(model, x, "rollout", query="dist")
    want = rollout(attns, keep_tokens=(0, 1))[:, 1, 2:].reshape(2, 4, 6)
    torch.testing.assert_close(e.maps, want)
    a = explain(model, x, "attention", query="cls", layer=0)
    torch.testing.assert_close(a.maps, attns[0].mean(1)[:, 0, 2:].reshape(2, 4, 6))
    g = explain(model, x, "grad-rollout", target=1)  # the eval logits: mean of both heads
    assert g.maps.shape == (2, 4, 6) and g.target.tolist() == [1, 1]
    with pytest.raises(BadConfigError, match="no distillation token"):
        explain(VisionTransformer(tiny_config()).eval(), x, query="dist")


@pytest.mark.parametrize("method", ["attention", "rollout", "grad-rollout"])
def test_batched_equals_one_by_one(method: str, tiny_model: VisionTransformer) -> None:
    x = torch.randn(3, 3, 32, 48)
    kw = {"target": [0, 1, 1]} if method == "grad-rollout" else {}
    batch = explain(tiny_model, x, method, **kw).maps  # type: ignore[arg-type]
    for i in range(3):
        kwi = {"target": kw["target"][i]} if kw else {}
        one = explain(tiny_model, x[i : i + 1], method, **kwi).maps  # type: ignore[arg-type]
        torch.testing.assert_close(batch[i : i + 1], one, atol=1e-5, rtol=1e-4)


def test_grad_rollout_uses_the_target_class_gradient(tiny_model: VisionTransformer) -> None:
    x = torch.randn(2, 3, 32, 48)
    logits, attns, grads, t = attention_and_gradients(tiny_model, x, target=1)
    assert t.tolist() == [1, 1]
    # the gradient of logit 1 w.r.t. the attention, checked against autograd on a fresh graph
    out, attns2 = tiny_model(x, return_attn=True)
    g2 = torch.autograd.grad(out[:, 1].sum(), attns2)
    torch.testing.assert_close(logits, out.detach())
    for a, b, g, h in zip(attns, attns2, grads, g2):
        torch.testing.assert_close(a, b.detach())
        torch.testing.assert_close(g, h)
    e1 = explain(tiny_model, x, "grad-rollout", target=1)
    torch.testing.assert_close(e1.maps, grad_rollout(attns, grads)[:, 0, 1:].reshape(2, 4, 6))
    e0 = explain(tiny_model, x, "grad-rollout", target=0)
    assert not torch.allclose(e0.maps, e1.maps)
    # default target = predicted class
    ed = explain(tiny_model, x, "grad-rollout")
    assert ed.target.tolist() == logits.argmax(-1).tolist()


def test_rollout_up_to_a_layer(tiny_model: VisionTransformer) -> None:
    x = torch.randn(1, 3, 32, 48)
    e = explain(tiny_model, x, "rollout", layer=0)
    R = rollout(_attns(tiny_model, x)[:1])
    torch.testing.assert_close(e.maps, readout(R, 1, (4, 6), 0))
    assert e.layer == 0


def test_padded_input_and_pixels() -> None:
    model = VisionTransformer(tiny_config(dynamic_img_size=True, dynamic_img_pad=True)).eval()
    x = torch.randn(1, 3, 30, 45)
    e = explain(model, x, "rollout")
    assert e.layout.grid_size == (4, 6) and e.maps.shape == (1, 4, 6)
    px = to_pixels(e.maps[0].numpy(), e.layout.patch_size, e.layout.input_size)
    assert px.shape == (30, 45)


def test_layer_head_maps(tiny_model: VisionTransformer) -> None:
    x = torch.randn(2, 3, 32, 48)
    maps, lay = layer_head_maps(tiny_model, x)
    assert maps.shape == (2, 2, 2, 4, 6) and lay.grid_size == (4, 6)
    want = _attns(tiny_model, x)[1][:, 0, 0, 1:].reshape(2, 4, 6)
    torch.testing.assert_close(maps[:, 1, 0], want)


def test_errors(tiny_model: VisionTransformer) -> None:
    x = torch.randn(1, 3, 32, 48)
    with pytest.raises(BadConfigError, match="method"):
        explain(tiny_model, x, "gradcam")  # type: ignore[arg-type]
    with pytest.raises(BadConfigError, match="head applies"):
        explain(tiny_model, x, "rollout", head=0)
    with pytest.raises(BadConfigError, match="target class"):
        explain(tiny_model, x, "grad-rollout", target=5)

    class NoAttn(nn.Module):
        num_prefix_tokens = 1
        patch_embed = type("PE", (), {"patch_size": 8})()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))

    with pytest.raises(BadConfigError, match="does not return attention"):
        explain(NoAttn(), x)
    # the model's train/eval mode is restored
    tiny_model.train()
    explain(tiny_model, x, "grad-rollout")
    assert tiny_model.training
