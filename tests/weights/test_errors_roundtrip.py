"""Readable errors for bad checkpoints, shape inference, and vitfas's own format."""

from __future__ import annotations

import json

import pytest
import torch

import vitfas
from vitfas.errors import BadCheckpointError
from vitfas.models import VisionTransformer, ViTConfig
from vitfas.weights import check_and_load, load_checkpoint, load_model, save_model

SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=3)


def _small(randomise, seed=0, **kw):
    return randomise(VisionTransformer(ViTConfig(**{**SMALL, **kw})), seed=seed)


def test_mismatch_lists_missing_unexpected_and_shapes(randomise, tmp_path):
    sd = _small(randomise).state_dict()
    del sd["blocks.1.norm2.bias"]
    sd["blocks.0.attn.extra"] = torch.zeros(2)
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(64, 16)
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file(sd, str(path))
    with pytest.raises(BadCheckpointError) as e:
        vitfas.create_model("vit_tiny_patch16_224", pretrained=path, img_size=32,
                            patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=3)
    msg = str(e.value)
    assert str(path) in msg
    assert "missing keys (1): blocks.1.norm2.bias" in msg
    assert "unexpected keys (1): blocks.0.attn.extra" in msg
    assert "wrongly shaped keys (1): blocks.0.mlp.fc1.weight: checkpoint [64, 16] vs model " \
           "[128, 32]" in msg


def test_head_mismatch_is_an_error_unless_allowed(randomise):
    model = VisionTransformer(ViTConfig(**{**SMALL, "num_classes": 7}))
    sd = _small(randomise).state_dict()
    with pytest.raises(BadCheckpointError, match=r"head\.weight: checkpoint \[3, 32\]"):
        check_and_load(model, sd, source="x")
    check_and_load(model, sd, source="x", allow_head_mismatch=True)
    assert torch.equal(model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize(
    "name, content, expect",
    [
        ("empty.pth", b"", "empty"),
        ("junk.pth", b"this is not a checkpoint at all", "unrecognised file"),
        ("trunc.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ", "safetensors"),
        ("trunc.pth", None, "truncated or corrupt"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, name, content, expect):
    path = tmp_path / name
    if content is None:  # a real torch zip cut in half
        torch.save({"w": torch.zeros(100)}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(BadCheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and expect in str(e.value)


class _Evil:  # unpickling this would run code under weights_only=False
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Evil()}, path)
    with pytest.raises(BadCheckpointError, match="refused to unpickle"):
        load_checkpoint(path)


def test_missing_path_and_unknown_layouts(tmp_path):
    with pytest.raises(BadCheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "resnet.pth")
    with pytest.raises(BadCheckpointError, match=r"resnet\.pth: not a recognised ViT.*encoder"):
        load_checkpoint(tmp_path / "resnet.pth")
    d = tmp_path / "folder"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"hello": 1}))
    torch.save({"w": torch.zeros(1)}, d / "pytorch_model.bin")
    with pytest.raises(BadCheckpointError, match="neither a vitfas/timm config"):
        load_checkpoint(d)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BadCheckpointError, match="found no single weights file"):
        load_checkpoint(tmp_path / "empty_dir")


def test_bare_state_dict_needs_heads(randomise, tmp_path, max_diff):
    src = _small(randomise, reg_tokens=2, layer_scale_init=0.1, global_pool="avg")
    torch.save(src.state_dict(), tmp_path / "w.pth")
    with pytest.raises(BadCheckpointError, match=r"attention heads.*name=.*num_heads="):
        load_model(tmp_path / "w.pth")
    ours = load_model(tmp_path / "w.pth", num_heads=4)
    c = ours.config
    assert (c.embed_dim, c.depth, c.reg_tokens, c.global_pool, c.num_classes) == (
        32, 2, 2, "avg", 3)
    assert c.img_size == (32, 32) and c.layer_scale_init is not None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(ours(x), src(x)) <= 1e-5


def test_round_trip_own_format(randomise, tmp_path, max_diff):
    src = _small(randomise, seed=2, reg_tokens=1, norm_eps=1e-12, gelu="tanh",
                 pos_embed_on_prefix=False, img_size=(32, 48))
    src.registry_name = None
    out = save_model(src, tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "vitfas" and cfg["architecture"]["config"]["img_size"] == [32, 48]
    back = load_model(out)
    assert back.config == src.config
    for k, v in src.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert max_diff(back(x), src(x)) == 0.0


def test_own_format_resampled_into_other_size(randomise, tmp_path, max_diff):
    """Our non-square 32x48 checkpoint into a 64x64 model: the stored grid (4x6) is used."""
    src = _small(randomise, seed=3, img_size=(32, 48))
    save_model(src, tmp_path / "m")
    big = load_model(tmp_path / "m", img_size=(64, 64))
    from vitfas.models import resample_pos_embed

    want = resample_pos_embed(src.pos_embed, (8, 8), (4, 6), num_prefix_tokens=1)
    assert max_diff(big.pos_embed, want) == 0.0
    # the weights file alone (config.json beside it) is read with the folder's description
    sd = load_checkpoint(tmp_path / "m" / "model.safetensors", big)
    assert torch.equal(sd["pos_embed"], want)


def test_prefix_positions_folded_or_padded(randomise, tmp_path, max_diff):
    """Checkpoint with class-token positions -> model without them (and back): exact."""
    with_pos = _small(randomise, seed=4)
    save_model(with_pos, tmp_path / "a")
    no_pos = load_model(tmp_path / "a", pos_embed_on_prefix=False)
    assert no_pos.pos_embed.shape[1] == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(no_pos(x), with_pos(x)) <= 1e-5
    save_model(no_pos, tmp_path / "b")
    again = load_model(tmp_path / "b", pos_embed_on_prefix=True)
    with torch.no_grad():
        assert max_diff(again(x), with_pos(x)) <= 1e-5


def test_load_model_reads_a_bundle(randomise, tmp_path, max_diff):
    from vitfas.bundle import save_bundle

    src = _small(randomise, seed=5, num_classes=2)
    save_bundle(tmp_path / "b", src, class_names=["spoof", "live"], live_index=1)
    back = load_model(tmp_path / "b")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(back(x), src(x)) == 0.0
    sd = load_checkpoint(tmp_path / "b")
    assert torch.equal(sd["head.weight"], src.head.weight)


def test_relative_position_tables_resampled_on_load(randomise, tmp_path, max_diff):
    """A rel-pos model saved at 32 px, loaded at 64 px, computes what the 32 px model
    computes on 64 px input with dynamic_img_size (the same resampling)."""
    src = _small(randomise, seed=6, pos_embed="rel", dynamic_img_size=True)
    save_model(src, tmp_path / "rel")
    big = load_model(tmp_path / "rel", img_size=64, dynamic_img_size=False)
    assert big.rel_pos[0].table.shape[0] == 15 * 15 + 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert max_diff(big(x), src(x)) <= 1e-5


def test_legacy_torch_pickle_and_compiled_prefix(randomise, tmp_path):
    """Old (non-zip) torch.save files and torch.compile's ``_orig_mod.`` prefix."""
    src = _small(randomise, seed=7)
    sd = {f"_orig_mod.{k}": v for k, v in src.state_dict().items()}
    path = tmp_path / "old.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    got = load_checkpoint(path)
    assert set(got) == set(src.state_dict())
    assert torch.equal(got["pos_embed"], src.pos_embed)
