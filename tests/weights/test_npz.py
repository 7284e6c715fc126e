"""JAX ``.npz`` checkpoints: written here in both original layouts from a random timm
model, read by timm's own loader (``VisionTransformer.load_pretrained`` ->
``_load_weights``) and by vitfas, and compared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitfas
from vitfas.weights import load_checkpoint

timm = pytest.importorskip("timm")
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402

TOL = 1e-5
SMALL = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, num_classes=5)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def to_jax(model: TimmViT, big_vision: bool = False, scanned: bool = False) -> dict:
    """The inverse of the JAX -> PyTorch conversion: a timm ViT as JAX arrays.

    vision_transformer: root keys, ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``,
    ``MlpBlock_3``, pos embedding under ``Transformer/posembed_input``.
    big_vision: ``params/`` prefix, ``..._0``, ``LayerNorm_1``, ``MlpBlock_0``, top-level
    ``pos_embedding``; ``scanned`` stacks the blocks along a leading depth axis.
    """
    sd = model.state_dict()
    D = model.embed_dim
    H = model.blocks[0].attn.num_heads
    hd = D // H
    pre = "params/" if big_vision else ""
    mha, ln2, mlp = (0, 1, 0) if big_vision else (1, 2, 3)
    w = {
        f"{pre}embedding/kernel": _np(sd["patch_embed.proj.weight"].permute(2, 3, 1, 0)),
        f"{pre}embedding/bias": _np(sd["patch_embed.proj.bias"]),
        f"{pre}Transformer/encoder_norm/scale": _np(sd["norm.weight"]),
        f"{pre}Transformer/encoder_norm/bias": _np(sd["norm.bias"]),
        f"{pre}head/kernel": _np(sd["head.weight"].T),
        f"{pre}head/bias": _np(sd["head.bias"]),
    }
    if "cls_token" in sd:
        w[f"{pre}cls"] = _np(sd["cls_token"])
    pos_key = "pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"
    w[pre + pos_key] = _np(sd["pos_embed"])
    blocks = []
    for i in range(len(model.blocks)):
        b = f"blocks.{i}."
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3, dim=0)  # each [H*hd, D]
        qb, kb, vb = sd[b + "attn.qkv.bias"].chunk(3, dim=0)
        a = f"MultiHeadDotProductAttention_{mha}/"
        blk = {
            "LayerNorm_0/scale": _np(sd[b + "norm1.weight"]),
            "LayerNorm_0/bias": _np(sd[b + "norm1.bias"]),
            f"LayerNorm_{ln2}/scale": _np(sd[b + "norm2.weight"]),
            f"LayerNorm_{ln2}/bias": _np(sd[b + "norm2.bias"]),
            a + "out/kernel": _np(sd[b + "attn.proj.weight"].T.reshape(H, hd, D)),
            a + "out/bias": _np(sd[b + "attn.proj.bias"]),
        }
        for n, wt, bs in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            blk[f"{a}{n}/kernel"] = _np(wt.T.reshape(D, H, hd))
            blk[f"{a}{n}/bias"] = _np(bs.reshape(H, hd))
        for r in range(2):
            blk[f"MlpBlock_{mlp}/Dense_{r}/kernel"] = _np(sd[f"{b}mlp.fc{r + 1}.weight"].T)
            blk[f"MlpBlock_{mlp}/Dense_{r}/bias"] = _np(sd[f"{b}mlp.fc{r + 1}.bias"])
        blocks.append(blk)
    if scanned:
        for name in blocks[0]:
            w[f"{pre}Transformer/encoderblock/{name}"] = np.stack([b[name] for b in blocks])
    else:
        for i, blk in enumerate(blocks):
            for name, arr in blk.items():
                w[f"{pre}Transformer/encoderblock_{i}/{name}"] = arr
    return w


def _timm_model(randomise, seed, **kw):
    return randomise(TimmViT(**{**SMALL, **kw}), seed=seed)


LAYOUTS = {
    "vision_transformer": ({}, dict(big_vision=False)),
    "big_vision": (dict(class_token=False, global_pool="avg", fc_norm=False),
                   dict(big_vision=True)),
    "big_vision_scanned": (dict(class_token=False, global_pool="avg", fc_norm=False),
                           dict(big_vision=True, scanned=True)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_npz_matches_timm_loader(layout, tmp_path, randomise, max_diff):
    model_kw, jax_kw = LAYOUTS[layout]
    src = _timm_model(randomise, 7, **model_kw)
    path = tmp_path / "ViT.npz"
    np.savez(path, **to_jax(src, **jax_kw))

    ref = TimmViT(**{**SMALL, **model_kw}).eval()
    ref.load_pretrained(str(path))  # timm's own JAX loader
    ours = vitfas.load_model(path)  # architecture from the array shapes
    assert ours.config.num_heads == 4 and ours.config.depth == 2
    assert ours.config.class_token == ("class_token" not in model_kw)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref_out = ref(x)
        assert max_diff(ref_out, src(x)) <= TOL  # the inverse conversion is right
        assert max_diff(ours(x), ref_out) <= TOL


def test_npz_resampled_like_timm(tmp_path, randomise, max_diff):
    """A 32 px (4x4 grid) npz into a 64 px model: timm resamples npz position embeddings
    bilinearly without antialias; vitfas uses the same kernel for this source."""
    src = _timm_model(randomise, 8)
    path = tmp_path / "ViT.npz"
    np.savez(path, **to_jax(src))
    ref = TimmViT(**{**SMALL, "img_size": 64}).eval()
    ref.load_pretrained(str(path))
    ours = vitfas.load_model(path, img_size=64)
    assert max_diff(ours.pos_embed, ref.pos_embed) <= 1e-6
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert max_diff(ours(x), ref(x)) <= TOL


def test_npz_opt_target_prefix_and_unknown_arrays(tmp_path, randomise):
    src = _timm_model(randomise, 9)
    w = {f"opt/target/{k}": v for k, v in to_jax(src).items()}
    path = tmp_path / "ckpt.npz"
    np.savez(path, **w)
    sd = load_checkpoint(path)
    assert torch.equal(sd["blocks.1.mlp.fc2.bias"], src.blocks[1].mlp.fc2.bias)
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    from vitfas.errors import BadCheckpointError

    with pytest.raises(BadCheckpointError, match=r"other\.npz.*not a JAX ViT checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
