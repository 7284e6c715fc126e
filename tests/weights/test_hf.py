"""Hugging Face transformers ViT -> vitfas, with both key-name generations."""

from __future__ import annotations

import json
import re

import pytest
import torch

import vitfas
from vitfas.weights import convert_hf_state_dict, hf_v5_to_v4, load_checkpoint

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def _hf_config(**kw):
    base = dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        image_size=32, patch_size=8, num_channels=3, num_labels=5,
    )  # layer_norm_eps left at transformers' default, 1e-12
    base.update(kw)
    return transformers.ViTConfig(**base)


# The v4 -> v5 rename, written out independently of vitfas.weights.hf (per layer suffix).
V4_TO_V5 = [
    (r"encoder\.layer\.(\d+)\.attention\.attention\.query\.", r"layers.\1.attention.q_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.key\.", r"layers.\1.attention.k_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.value\.", r"layers.\1.attention.v_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.o_proj."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp.fc1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp.fc2."),
    (r"encoder\.layer\.(\d+)\.layernorm_", r"layers.\1.layernorm_"),
]


def _to_v5(sd):
    out = {}
    for k, v in sd.items():
        for pat, rep in V4_TO_V5:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


@pytest.fixture(scope="module")
def hf_cls(randomise):
    return randomise(transformers.ViTForImageClassification(_hf_config()), seed=3)


def _logits(model, x):
    with torch.no_grad():
        return model(pixel_values=x).logits


def test_save_pretrained_folder_matches(hf_cls, tmp_path, max_diff):
    hf_cls.save_pretrained(tmp_path / "hf")
    from safetensors.torch import load_file

    disk = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert "vit.encoder.layer.0.attention.attention.query.weight" in disk  # v4 names on disk
    ours = vitfas.load_model(tmp_path / "hf")
    assert ours.config.norm_eps == 1e-12
    assert ours.config.num_classes == 5 and ours.config.num_heads == 4
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), _logits(hf_cls, x)) <= TOL


def test_hf_eps_reaches_every_layernorm(hf_cls, tmp_path):
    """HF's default 1e-12 (not timm's 1e-6) is what every LayerNorm of ours uses."""
    hf_cls.save_pretrained(tmp_path / "hf")
    ours = vitfas.load_model(tmp_path / "hf")
    assert all(m.eps == 1e-12 for m in ours.modules() if isinstance(m, torch.nn.LayerNorm))


def test_v5_named_folder_matches(hf_cls, tmp_path, max_diff):
    """A folder whose weights carry transformers-5 names (as ``model.state_dict()`` in 5.x)."""
    from safetensors.torch import load_file, save_file

    hf_cls.save_pretrained(tmp_path / "v4")
    v4 = load_file(str(tmp_path / "v4" / "model.safetensors"))
    v5 = _to_v5(v4)
    assert "vit.layers.1.attention.q_proj.weight" in v5
    live = set(hf_cls.state_dict())
    if any(k.startswith("vit.layers.") for k in live):  # transformers >= 5: names agree
        assert set(v5) == live
    d = tmp_path / "v5"
    d.mkdir()
    (d / "config.json").write_text((tmp_path / "v4" / "config.json").read_text())
    save_file(v5, str(d / "model.safetensors"))
    ours = vitfas.load_model(d)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), _logits(hf_cls, x)) <= TOL
    # the documented table round-trips
    assert set(hf_v5_to_v4(v5)) == set(v4)


def test_vit_model_without_prefix_or_classifier(tmp_path, randomise, max_diff):
    ref = randomise(transformers.ViTModel(_hf_config(), add_pooling_layer=True), seed=4)
    ref.save_pretrained(tmp_path / "enc")
    ours = vitfas.load_model(tmp_path / "enc")
    assert ours.config.num_classes == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = ref(pixel_values=x).last_hidden_state
        assert max_diff(ours.forward_features(x), hidden) <= TOL


def test_hf_state_dict_file_into_named_model(hf_cls, tmp_path, max_diff):
    """A bare HF ``.bin`` (no config) loads into an architecture built by the caller."""
    torch.save(hf_cls.state_dict(), tmp_path / "pytorch_model.bin")
    sd = load_checkpoint(tmp_path / "pytorch_model.bin")
    assert "blocks.1.attn.qkv.weight" in sd and sd["blocks.1.attn.qkv.weight"].shape == (144, 48)
    cfg = vitfas.ViTConfig(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4,
                           mlp_ratio=2.0, num_classes=5, norm_eps=1e-12)
    ours = vitfas.VisionTransformer(cfg).eval()
    from vitfas.weights import check_and_load

    check_and_load(ours, sd)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), _logits(hf_cls, x)) <= TOL


def test_tanh_gelu_and_no_qkv_bias(tmp_path, randomise, max_diff):
    ref = randomise(transformers.ViTForImageClassification(
        _hf_config(hidden_act="gelu_pytorch_tanh", qkv_bias=False, layer_norm_eps=1e-6,
                   image_size=[32, 48])
    ), seed=5)
    ref.save_pretrained(tmp_path / "hf")
    ours = vitfas.load_model(tmp_path / "hf")
    assert ours.config.gelu == "tanh" and not ours.config.qkv_bias
    assert ours.config.img_size == (32, 48)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert max_diff(ours(x), _logits(ref, x)) <= TOL


def test_unsupported_model_type_is_named(tmp_path):
    from vitfas.errors import BadCheckpointError

    d = tmp_path / "deit"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "deit"}))
    torch.save({"a": torch.zeros(1)}, d / "pytorch_model.bin")
    with pytest.raises(BadCheckpointError, match="model_type 'deit'"):
        vitfas.load_model(d)


def test_convert_rejects_leftover_keys():
    from vitfas.errors import BadCheckpointError

    sd = {"embeddings.patch_embeddings.projection.weight": torch.zeros(4, 3, 2, 2),
          "encoder.layer.0.attention.attention.rotary.weight": torch.zeros(1)}
    with pytest.raises(BadCheckpointError, match="rotary"):
        convert_hf_state_dict(sd)


def test_sharded_folder_and_eps_warning(hf_cls, tmp_path, caplog, max_diff):
    hf_cls.save_pretrained(tmp_path / "sh", max_shard_size="20KB")
    assert (tmp_path / "sh" / "model.safetensors.index.json").is_file()
    ours = vitfas.load_model(tmp_path / "sh")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), _logits(hf_cls, x)) <= TOL
    # into a timm-style registry model (eps 1e-6): loads, with a warning naming the eps
    with caplog.at_level("WARNING", logger="vitfas"):
        m = vitfas.create_model("vit_tiny_patch16_224", pretrained=tmp_path / "sh",
                                img_size=32, patch_size=8, embed_dim=48, depth=2,
                                num_heads=4, mlp_ratio=2.0, num_classes=5)
    assert "norm_eps: checkpoint 1e-12 vs model 1e-06" in caplog.text
    assert torch.equal(m.head.weight, hf_cls.classifier.weight)


def test_bare_hf_file_needs_config_or_name(hf_cls, tmp_path, max_diff):
    from vitfas.errors import BadCheckpointError

    d = tmp_path / "bare"
    d.mkdir()
    torch.save(hf_cls.state_dict(), d / "weights.bin")
    with pytest.raises(BadCheckpointError, match=r"without its config\.json.*name="):
        vitfas.load_model(d / "weights.bin")
