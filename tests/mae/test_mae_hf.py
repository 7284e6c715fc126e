"""Our MAE equals transformers' ViTMAEForPreTraining given the same weights and noise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from vitfas.errors import BadCheckpointError
from vitfas.models.mae import MaskedAutoencoderViT
from vitfas.weights.core import check_and_load
from vitfas.weights.mae import convert_hf_mae, load_mae, load_mae_encoder, mae_config_from_hf

transformers = pytest.importorskip("transformers")



def _with_hf_sincos(hf):
    """Fill HF's fixed position embeddings with HF's own sin-cos code.

    transformers 5.24 leaves both at zero when a ViTMAEForPreTraining is built from a config
    (``_init_weights`` zeroes ``decoder_pos_embed`` and skips the encoder's
    ``initialize_weights``); checkpoints loaded with ``from_pretrained`` carry the real ones.
    """
    proj = hf.vit.embeddings.patch_embeddings.projection
    if hasattr(proj, "_is_hf_initialized"):
        del proj._is_hf_initialized
    hf.vit.embeddings.initialize_weights()
    hf.decoder.initialize_weights(hf.vit.embeddings.patch_embeddings.num_patches)
    assert hf.vit.embeddings.position_embeddings.abs().sum() > 1
    assert hf.decoder.decoder_pos_embed.abs().sum() > 1
    return hf


def hf_model(**kw):
    cfg = transformers.ViTMAEConfig(**{
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 80, "decoder_hidden_size": 24, "decoder_num_hidden_layers": 2,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 48,
        "image_size": 32, "patch_size": 8, "layer_norm_eps": 1e-6, **kw,
    })
    cfg._attn_implementation = "eager"
    m = _with_hf_sincos(transformers.ViTMAEForPreTraining(cfg))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "pos_embed" in name or "position_embeddings" in name:
                continue  # fixed sin-cos
            if name.endswith("bias") or "norm" in name or "layernorm" in name:
                # randomised LayerNorm weights and all biases
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return m.eval()


def ours_from(hf) -> MaskedAutoencoderViT:
    ours = MaskedAutoencoderViT(mae_config_from_hf(hf.config)).eval()
    check_and_load(ours, convert_hf_mae(hf.state_dict()), "hf")
    return ours


@pytest.mark.parametrize(("kw", "ratio"), [
    ({}, 0.75),
    ({"norm_pix_loss": True}, 0.75),
    ({"mask_ratio": 0.5, "hidden_act": "gelu_new", "qkv_bias": False,
      "image_size": 48, "num_channels": 1, "layer_norm_eps": 1e-12}, 0.5),
])
def test_equals_transformers(kw: dict, ratio: float) -> None:
    hf = hf_model(**kw)
    ours = ours_from(hf)
    assert ours.config.mask_ratio == ratio
    c = ours.config
    x = torch.randn(3, c.in_chans, *c.img_size)
    noise = torch.rand(3, c.num_patches)
    with torch.no_grad():
        ref = hf(pixel_values=x, noise=noise)
        out = ours(x, noise=noise)
    assert torch.equal(out.mask, ref.mask)
    assert torch.equal(out.ids_restore, ref.ids_restore)
    torch.testing.assert_close(out.pred, ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.unpatchify(out.pred), hf.unpatchify(ref.logits, c.img_size),
                               rtol=0, atol=1e-5)
    assert ref.loss.item() > 0.1  # a non-trivial comparison


def test_fresh_position_embeddings_equal_transformers() -> None:
    """Our sin-cos (built, not copied) is HF's layout, which follows the reference MAE."""
    hf = _with_hf_sincos(transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=32, image_size=48, patch_size=8)))
    ours = MaskedAutoencoderViT(mae_config_from_hf(hf.config))
    torch.testing.assert_close(ours.pos_embed, hf.vit.embeddings.position_embeddings.data,
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(ours.decoder_pos_embed, hf.decoder.decoder_pos_embed.data,
                               rtol=0, atol=1e-7)


def _to_hf4_names(sd: dict) -> dict:
    """transformers 4.x key names (the layout of the checkpoints on the hub)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^vit\.layers\.", "vit.encoder.layer.", k)
        k = k.replace("attention.q_proj", "attention.attention.query")
        k = k.replace("attention.k_proj", "attention.attention.key")
        k = k.replace("attention.v_proj", "attention.attention.value")
        k = k.replace("attention.o_proj", "attention.output.dense")
        k = k.replace("mlp.fc1", "intermediate.dense").replace("mlp.fc2", "output.dense")
        out[k] = v
    return out


def test_loads_hf_folder_with_4x_names(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    hf = hf_model(norm_pix_loss=True)
    sd = {k: v.contiguous() for k, v in _to_hf4_names(hf.state_dict()).items()}
    assert any("attention.attention.query" in k for k in sd)
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    ours = load_mae(tmp_path).eval()
    assert ours.config.norm_pix_loss
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, noise=noise).loss, hf(x, noise=noise).loss,
                                   rtol=0, atol=1e-5)


def test_hf_encoder_fine_tunes_as_vit(tmp_path: Path) -> None:
    """An HF ViTMAE checkpoint -> a ViT whose features equal HF's ViTMAEModel with nothing
    masked (mask_ratio 0, identity shuffle)."""
    from safetensors.torch import save_file

    hf = hf_model(mask_ratio=0.0)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    vit = load_mae_encoder(tmp_path, num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf.vit(pixel_values=x, noise=torch.arange(16.0).repeat(2, 1)).last_hidden_state
        torch.testing.assert_close(vit.forward_features(x), ref, rtol=0, atol=1e-5)


def test_conversion_errors_name_keys() -> None:
    sd = dict(hf_model().state_dict())
    sd["vit.pooler.dense.weight"] = torch.zeros(1)
    with pytest.raises(BadCheckpointError, match=r"vit\.pooler\.dense\.weight"):
        convert_hf_mae(sd, source="x.safetensors")
    sd.pop("vit.pooler.dense.weight")
    sd.pop("vit.layers.1.attention.k_proj.weight")
    with pytest.raises(BadCheckpointError, match=r"blocks\.1\.attn.*\['q', 'v'\]"):
        convert_hf_mae(sd)


def test_load_mae_roundtrip_own_format(tmp_path: Path) -> None:
    from vitfas.weights.core import save_model

    hf = hf_model()
    ours = ours_from(hf)
    save_model(ours, tmp_path / "m")
    again = load_mae(tmp_path / "m").eval()
    x, noise = torch.randn(1, 3, 32, 32), torch.rand(1, 16)
    with torch.no_grad():
        assert torch.equal(again(x, noise=noise).pred, ours(x, noise=noise).pred)
    with pytest.raises(BadCheckpointError, match="no such file"):
        load_mae(tmp_path / "nope")
