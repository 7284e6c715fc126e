"""MAE model: masking, unshuffling, loss on hidden patches, equivalence with transformers'
ViTMAEForPreTraining, and the encoder loading into a VisionTransformer."""

from __future__ import annotations

import pytest
import torch

from vitfas.errors import BadCheckpointError
from vitfas.models import VisionTransformer, create_model, list_models
from vitfas.models.mae import (
    MAEConfig,
    MaskedAutoencoderViT,
    num_visible,
    patchify,
    random_masking,
    unpatchify,
    vit_config_from_mae,
)
from vitfas.models.pos_embed import sincos_2d
from vitfas.weights.core import check_and_load

TINY = {
    "img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4,
    "decoder_embed_dim": 24, "decoder_depth": 2, "decoder_num_heads": 2,
}



def tiny(**kw) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(MAEConfig(**{**TINY, **kw})).eval()


# ----------------------------------------------------------------------------- masking
@pytest.mark.parametrize(("n", "ratio", "keep"), [(16, 0.75, 4), (196, 0.75, 49), (10, 0.9, 1),
                                                  (16, 0.5, 8), (16, 0.0, 16), (64, 0.6, 26)])
def test_num_visible_counts(n: int, ratio: float, keep: int) -> None:
    assert num_visible(n, ratio) == keep


def test_masking_keeps_exact_count_per_sample_and_differs_between_samples() -> None:
    B, N, D = 6, 49, 5
    x = torch.randn(B, N, D)
    vis, mask, _, ids_keep = random_masking(x, 0.75, None)
    keep = round(N * 0.25)
    assert vis.shape == (B, keep, D)
    assert torch.equal(mask.sum(1), torch.full((B,), float(N - keep)))
    # the visible tokens are exactly the unmasked positions, with their own content
    for b in range(B):
        visible_pos = torch.nonzero(mask[b] == 0).flatten()
        assert torch.equal(torch.sort(ids_keep[b]).values, visible_pos)
        assert torch.equal(vis[b], x[b, ids_keep[b]])
    masks = {tuple(m.tolist()) for m in mask}
    assert len(masks) == B  # per-sample masks, not one mask for the batch


def test_masking_is_reproducible_from_noise_and_follows_it() -> None:
    x = torch.randn(2, 16, 3)
    noise = torch.rand(2, 16)
    a = random_masking(x, 0.75, noise)
    b = random_masking(x, 0.75, noise.clone())
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    # the 4 smallest noise values are the visible patches
    expect = torch.topk(noise, 4, dim=1, largest=False).indices
    for i in range(2):
        assert set(a[3][i].tolist()) == set(expect[i].tolist())
    with pytest.raises(ValueError, match=r"\[2, 16\]"):
        random_masking(x, 0.75, torch.rand(2, 15))


def test_unshuffle_restores_order() -> None:
    x = torch.randn(3, 16, 4)
    noise = torch.rand(3, 16)
    ids_shuffle = torch.argsort(noise, dim=1)
    _, _, ids_restore, _ = random_masking(x, 0.75, noise)
    shuffled = torch.gather(x, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, 4))
    restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 4))
    assert torch.equal(restored, x)


def test_decoder_places_visible_tokens_at_their_positions() -> None:
    """With the decoder reduced to its unshuffle step, visible patch ``ids_keep[k]`` holds
    encoder token ``1 + k`` and every hidden patch holds the mask token."""
    m = tiny()
    m.decoder_blocks = torch.nn.ModuleList()
    m.decoder_norm = torch.nn.Identity()
    m.decoder_pred = torch.nn.Identity()
    m.decoder_pos_embed.zero_()
    x = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    ids_keep = torch.argsort(noise, dim=1)[:, :4]
    latent, mask, ids_restore = m.forward_encoder(x, noise=noise)
    out = m.forward_decoder(latent, ids_restore)  # [B, N, D'] (no prediction head now)
    emb = m.decoder_embed(latent)
    for b in range(2):
        for k in range(4):
            assert torch.equal(out[b, ids_keep[b, k]], emb[b, 1 + k])
        hid = torch.nonzero(mask[b] == 1).flatten()
        assert len(hid) == 12
        assert torch.equal(out[b, hid], m.mask_token[0].expand(12, -1))


def test_patchify_roundtrip_and_layout() -> None:
    x = torch.randn(2, 3, 16, 24)
    p = patchify(x, 8)
    assert p.shape == (2, 6, 192)
    assert torch.equal(unpatchify(p, 8, (2, 3), 3), x)
    # patch 4 = grid row 1, col 1; first element is its top-left pixel, channel-fastest
    assert torch.equal(p[:, 4, :3], x[:, :, 8, 8])


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_counts_only_hidden_patches(norm_pix: bool) -> None:
    m = tiny(norm_pix_loss=norm_pix)
    x = torch.randn(3, 3, 32, 32)
    _, mask, _ = m.forward_encoder(x)
    target = m.target(x)
    garbage = torch.randn_like(target) * 100
    m1 = mask.unsqueeze(-1)
    perfect_on_hidden = target * m1 + garbage * (1 - m1)
    assert m.forward_loss(x, perfect_on_hidden, mask).item() == pytest.approx(0.0, abs=1e-10)
    # and a perfect reconstruction of the visible patches only is not zero
    perfect_on_visible = target * (1 - m1) + garbage * m1
    assert m.forward_loss(x, perfect_on_visible, mask).item() > 1.0
    # hand-worked value: error 2 everywhere on hidden patches -> loss 4
    assert m.forward_loss(x, target + 2.0, mask).item() == pytest.approx(4.0, rel=1e-6)


def test_norm_pix_target_is_per_patch_normalised() -> None:
    m = tiny(norm_pix_loss=True)
    x = torch.rand(2, 3, 32, 32) * 5 + 3
    t = m.target(x)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(2, 16), atol=1e-3)


def test_forward_shapes_and_errors() -> None:
    m = tiny()
    out = m(torch.randn(2, 3, 32, 32))
    assert out.pred.shape == (2, 16, 192)
    assert out.mask.shape == (2, 16) and out.ids_restore.shape == (2, 16)
    assert out.loss.ndim == 0
    with pytest.raises(ValueError, match="32x32 inputs, got 48x48"):
        m(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="3 input channels, got 1"):
        m(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(**{**TINY, "mask_ratio": 1.0})


def test_registry_names() -> None:
    names = list_models("mae_*")
    assert {"mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"} <= set(names)
    m = create_model("mae_vit_tiny_patch16", img_size=32, depth=1, decoder_depth=1)
    assert isinstance(m, MaskedAutoencoderViT) and m.registry_name == "mae_vit_tiny_patch16"


def test_reference_parameter_count() -> None:
    """facebookresearch/mae's mae_vit_base_patch16 has 111,907,840 parameters, of which
    the two fixed position embeddings are 197*768 + 197*512 (ours are buffers)."""
    with torch.device("meta"):
        m = MaskedAutoencoderViT(MAEConfig())
    trainable = sum(p.numel() for p in m.parameters())
    fixed = m.pos_embed.numel() + m.decoder_pos_embed.numel()
    assert fixed == 197 * 768 + 197 * 512
    assert trainable + fixed == 111_907_840


# ----------------------------------------------------------------------------- encoder -> ViT
def test_encoder_loads_into_vit_with_only_head_missing() -> None:
    m = tiny()
    cfg = vit_config_from_mae(m.config, num_classes=2)
    vit = VisionTransformer(cfg)
    missing, unexpected = vit.load_state_dict(m.encoder_state_dict(), strict=False)
    assert sorted(missing) == ["head.bias", "head.weight"]
    assert unexpected == []
    with pytest.raises(BadCheckpointError, match="head"):
        check_and_load(VisionTransformer(cfg), m.encoder_state_dict(), "mae")
    check_and_load(VisionTransformer(cfg), m.encoder_state_dict(), "mae", allow_head_mismatch=True)
    # the whole MAE state dict has the decoder on top: those are the only extras
    _, extra = VisionTransformer(cfg).load_state_dict(m.state_dict(), strict=False)
    assert extra and all(k.startswith(("decoder_", "mask_token")) for k in extra)


def test_encoder_features_equal_vit_features() -> None:
    """Nothing hidden and the identity shuffle: the MAE encoder and the ViT compute the same."""
    m = tiny()
    vit = m.to_vit(num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    noise = torch.arange(16.0).expand(2, -1)
    latent, mask, _ = m.forward_encoder(x, mask_ratio=0.0, noise=noise)
    assert mask.sum() == 0
    torch.testing.assert_close(latent, vit.forward_features(x), rtol=0, atol=1e-5)
    assert vit(x).shape == (2, 2)
    assert vit.pos_embed.requires_grad  # learnable from the sin-cos start, as in MAE fine-tuning


# ----------------------------------------------------------------------------- sin-cos
def test_sincos_matches_reference_mae_formula() -> None:
    """The reference get_2d_sincos_pos_embed, written out: meshgrid(w, h) so the first half
    of the channels encodes the column, each half [sin | cos], omega = 1/10000^(i/(D/4))."""
    import numpy as np

    D, g = 16, 3
    omega = 1.0 / 10000 ** (np.arange(D // 4, dtype=np.float64) / (D / 4))
    rows = []
    for h in range(g):
        for w in range(g):
            rows.append(np.concatenate([np.sin(w * omega), np.cos(w * omega),
                                        np.sin(h * omega), np.cos(h * omega)]))
    ref = torch.tensor(np.stack(rows), dtype=torch.float32)
    torch.testing.assert_close(sincos_2d((g, g), D), ref, rtol=0, atol=1e-7)


def test_grad_checkpointing_same_loss_and_grads() -> None:
    m = tiny().train()
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    m(x, noise=noise).loss.backward()
    g = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing()
    m(x, noise=noise).loss.backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g[k], rtol=0, atol=1e-6)


def test_reference_pth_checkpoints(tmp_path) -> None:
    """facebookresearch/mae files: {"model": state dict} with our names; the "pretrain"
    releases hold the encoder only and load straight into a ViT."""
    from vitfas.weights.mae import load_mae, load_mae_encoder

    m = tiny()
    torch.save({"model": m.state_dict(), "epoch": 799}, tmp_path / "vis.pth")
    again = load_mae(tmp_path / "vis.pth", **TINY)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in m.state_dict().items())
    torch.save({"model": m.encoder_state_dict()}, tmp_path / "pretrain.pth")
    enc_kw = {k: TINY[k] for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads")}
    vit = load_mae_encoder(tmp_path / "pretrain.pth", num_classes=3, **enc_kw).eval()
    x = torch.randn(1, 3, 32, 32)
    latent, _, _ = m.forward_encoder(x, mask_ratio=0.0, noise=torch.arange(16.0)[None])
    torch.testing.assert_close(vit.forward_features(x), latent, rtol=0, atol=1e-5)
    with pytest.raises(BadCheckpointError, match="missing keys"):
        load_mae(tmp_path / "pretrain.pth", **TINY)
