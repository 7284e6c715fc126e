"""MAE with a convolutional (CDC) stem: hidden pixels never reach the visible tokens, the
encoder is exactly the from-scratch recipe's ConvStemVisionTransformer, and a pretrain-mae
encoder folder loads into ``vit_cdcstem_w64_p8_64`` the way ``vitfas train`` loads
``model.pretrained``."""

from __future__ import annotations

import pytest
import torch

from vitfas.models import ConvStemVisionTransformer, create_model
from vitfas.models.mae import MAEConfig, MaskedAutoencoderViT, random_masking
from vitfas.models.registry import get_entry

CDC = {
    "img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
    "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2,
    "stem": "cdc", "stem_channels": (8, 8, 16),
}


def cdc(**kw) -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(MAEConfig(**{**CDC, **kw})).eval()


def test_pixel_mask_is_the_token_mask_drawn_from_the_same_noise() -> None:
    m = cdc()
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    _, mask, _, _ = random_masking(torch.zeros(3, 16, 4), 0.75, noise)
    pix = m.pixel_mask(noise, 0.75)
    assert pix.shape == (3, 1, 32, 32)
    # every 8x8 block of the pixel mask is constant and equals its patch's mask value
    blocks = pix.view(3, 4, 8, 4, 8).permute(0, 1, 3, 2, 4).reshape(3, 16, 64)
    assert (blocks == blocks[..., :1]).all()
    torch.testing.assert_close(blocks[..., 0], mask)
    assert pix.sum() == 3 * 12 * 64  # 12 of 16 patches hidden per image


def test_hidden_pixels_do_not_reach_visible_tokens() -> None:
    """The stem's 3x3 stride-2 convolutions see 15 px: without zeroing, pixels of a hidden
    patch would change the neighbouring visible tokens."""
    m = cdc()
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(2))
    x = torch.randn(2, 3, 32, 32)
    hidden = m.pixel_mask(noise, 0.75).bool().expand(-1, 3, -1, -1)
    y = x.clone()
    y[hidden] = torch.randn(int(hidden.sum()))  # change only the hidden pixels
    lat_x, mask_x, _ = m.forward_encoder(x, noise=noise)
    lat_y, mask_y, _ = m.forward_encoder(y, noise=noise)
    assert torch.equal(mask_x, mask_y)
    torch.testing.assert_close(lat_x, lat_y, rtol=0, atol=0)
    # ... while a change in a visible patch does change them
    z = x.clone()
    z[~hidden] += 1.0
    assert not torch.allclose(m.forward_encoder(z, noise=noise)[0], lat_x)
    # the loss still targets the true hidden pixels (not the zeroed input)
    out = m(y, noise=noise)
    assert torch.isfinite(out.loss) and out.pred.shape == (2, 16, 8 * 8 * 3)
    assert not torch.allclose(m(x, noise=noise).loss, out.loss)


def test_encoder_is_the_recipe_conv_stem_vit() -> None:
    mae = create_model("mae_vit_cdcstem_w64_p8_64")
    vit = mae.to_vit(num_classes=2)
    assert isinstance(vit, ConvStemVisionTransformer)
    assert vit.config == get_entry("vit_cdcstem_w64_p8_64").config
    # nothing hidden, identity shuffle: the MAE encoder computes the ViT's features
    vit.eval()
    mae.eval()
    x = torch.randn(2, 3, 64, 64)
    latent, mask, _ = mae.forward_encoder(x, mask_ratio=0.0, noise=torch.arange(64.0).repeat(2, 1))
    assert mask.sum() == 0
    torch.testing.assert_close(latent, vit.forward_features(x), rtol=0, atol=1e-5)


def test_encoder_folder_loads_as_model_pretrained(tmp_path) -> None:
    """``vitfas train`` builds ``create_model(name, pretrained=PATH)``: the encoder folder of
    a conv-stem MAE must load into the recipe model with only the head new."""
    from vitfas.weights import create_model as create_with_weights
    from vitfas.weights.core import save_model

    mae = create_model("mae_vit_cdcstem_w64_p8_64")
    with torch.no_grad():  # make the stem's BatchNorm statistics non-trivial
        for mod in mae.patch_embed.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    enc = mae.to_vit(num_classes=0)
    enc.registry_name = None
    save_model(enc, tmp_path / "encoder")
    vit = create_with_weights("vit_cdcstem_w64_p8_64", pretrained=str(tmp_path / "encoder"),
                              num_classes=2, img_size=64).eval()
    for k, v in enc.state_dict().items():
        assert torch.equal(vit.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(vit.forward_features(x), enc.eval().forward_features(x))


def test_stem_config_errors() -> None:
    with pytest.raises(ValueError, match=r"patch_size = 2\*\*len\(stem_channels\)"):
        MAEConfig(**{**CDC, "stem_channels": (8, 16)})
    with pytest.raises(ValueError, match="stem must be linear"):
        MAEConfig(**{**CDC, "stem": "dct"})
    assert MAEConfig(**{**CDC, "stem_channels": [8, 8, 16]}).stem_channels == (8, 8, 16)


def test_shipped_config_pretrains_the_fas_scratch_encoder() -> None:
    """``pretrain_mae_fas_scratch`` builds the MAE whose encoder is ``fas_scratch``'s model,
    with ``vitfas train``'s input size and normalisation."""
    from vitfas.pretrain.mae import PretrainMAEConfig, build_model
    from vitfas.train.config import load_config
    from vitfas.train.run import TrainConfig

    mae_cfg = load_config(PretrainMAEConfig, "pretrain_mae_fas_scratch")
    train_cfg = load_config(TrainConfig, "fas_scratch")
    mae = build_model(mae_cfg)
    vit_cfg = mae.vit_config(num_classes=2)
    assert vit_cfg == get_entry(train_cfg.model.name).config
    assert mae_cfg.model.img_size == train_cfg.data.img_size == 64
    assert tuple(mae_cfg.data.mean) == tuple(train_cfg.data.mean)
    assert tuple(mae_cfg.data.std) == tuple(train_cfg.data.std)
