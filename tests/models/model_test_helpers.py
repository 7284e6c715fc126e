"""Helpers shared by the model equivalence tests (imported by name: pytest puts this folder
on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn


def randomise(model: nn.Module, std: float = 0.05, table_std: float = 0.5) -> None:
    """Random weights everywhere, LayerNorms included (not 1/0), so nothing hides.

    LayerNorm weights ~ 1 + 0.2 N(0, 1), biases ~ 0.2 N(0, 1); every other parameter
    ~ ``std`` N(0, 1), relative position bias tables ~ ``table_std`` N(0, 1). Seeded, so the
    same model gets the same values.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if "norm" not in name:
                s = table_std if "relative_position_bias_table" in name else std
                p.copy_(s * torch.randn(p.shape, generator=g))


def assert_onnx_parity(bundle: object, x: torch.Tensor, ref: torch.Tensor, path: object,
                       atol: float = 1e-4) -> None:
    """Export ``bundle`` to ONNX at ``path``; the export's own check and an onnxruntime
    session on ``x`` must both match ``ref`` (the PyTorch output) to ``atol``."""
    import numpy as np
    import onnxruntime as ort

    from vitfas.export.onnx import export_onnx

    rep = export_onnx(bundle, path)
    assert rep["ok"] and rep["max_abs_diff"] <= atol, rep
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, ref.numpy(), atol=atol)


def assert_attention_and_explain(model: nn.Module, x: torch.Tensor, tokens: int,
                                 heads: int, depth: int, map_shape: tuple[int, int]) -> None:
    """``model(x, return_attn=True)`` gives the plain logits and ``depth`` row-stochastic
    ``[B, heads, tokens, tokens]`` maps, and every explain method gives finite
    ``[B, *map_shape]`` maps."""
    from vitfas.explain.explainer import explain

    b = x.shape[0]
    logits, attns = model(x, return_attn=True)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=0)
    assert [a.shape for a in attns] == [(b, heads, tokens, tokens)] * depth
    torch.testing.assert_close(attns[0].sum(-1), torch.ones(b, heads, tokens), atol=1e-5, rtol=0)
    for method in ("rollout", "grad-rollout", "attention"):
        maps = explain(model, x, method).maps
        assert maps.shape == (b, *map_shape), method
        assert torch.isfinite(maps).all(), method
