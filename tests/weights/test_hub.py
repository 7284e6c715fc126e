"""``pretrained=True`` / ``"hf-hub:..."`` through huggingface_hub, offline, with a hub cache
folder built on the spot (nothing is downloaded)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import vitfas
from vitfas.errors import BadCheckpointError
from vitfas.models import get_entry

NAME = "vit_tiny_patch16_224"
REV = "0123456789abcdef0123456789abcdef01234567"


def _blob(repo_dir: Path, name: str, data: bytes) -> None:
    """Lay a file out as huggingface_hub's cache does: blob + snapshot link + refs/main."""
    sha = hashlib.sha256(data).hexdigest()
    blob = repo_dir / "blobs" / sha
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snap = repo_dir / "snapshots" / REV / name
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.symlink_to(Path("..", "..", "blobs", sha))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(REV)


def _offline(monkeypatch, cache: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture()
def cached_repo(tmp_path, monkeypatch, timm_tiny):
    """A hub cache holding the registry's checkpoint repo for vit_tiny_patch16_224."""
    from safetensors.torch import save

    repo = get_entry(NAME).hub_id
    assert repo and repo.startswith("timm/")
    cache = tmp_path / "hub"
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    sd = {k: v.contiguous() for k, v in timm_tiny.state_dict().items()}
    _blob(repo_dir, "model.safetensors", save(sd))
    _offline(monkeypatch, cache)
    return repo, repo_dir


def _same_weights(model, ref) -> None:
    ours = model.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours[k], v), k


def test_pretrained_true_offline_from_cache(cached_repo, timm_tiny):
    model = vitfas.create_model(NAME, pretrained=True)
    _same_weights(model, timm_tiny)


def test_hf_hub_spec_with_config(cached_repo, timm_tiny):
    repo, repo_dir = cached_repo
    cfg = {"architecture": NAME, "num_classes": 1000,
           "pretrained_cfg": {"input_size": [3, 224, 224]}}
    _blob(repo_dir, "config.json", json.dumps(cfg).encode())
    model = vitfas.create_model(NAME, pretrained=f"hf-hub:{repo}")
    _same_weights(model, timm_tiny)


def test_empty_cache_names_repo_and_local_alternative(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path / "empty")
    repo = get_entry(NAME).hub_id
    with pytest.raises(BadCheckpointError) as e:
        vitfas.create_model(NAME, pretrained=True)
    msg = str(e.value)
    assert repo in msg
    assert f"create_model('{NAME}', pretrained='/path/to/model.safetensors')" in msg
    assert "offline=True" in msg


def test_no_public_checkpoint_registered():
    name = "vit_base_patch16_sincos_224"
    assert get_entry(name).hub_id is None
    with pytest.raises(BadCheckpointError, match=r"no public checkpoint.*pretrained="):
        vitfas.create_model(name, pretrained=True, depth=1)


def test_load_model_from_cached_hf_transformers_repo(tmp_path, monkeypatch, randomise):
    """``vitfas.load_model("hf-hub:org/repo")`` for a transformers ViT repo in the cache."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, image_size=32, patch_size=8,
                                 num_labels=2)
    ref = randomise(transformers.ViTForImageClassification(cfg), seed=11)
    ref.save_pretrained(tmp_path / "export")
    cache = tmp_path / "hub"
    repo_dir = cache / "models--someone--vit-fas-tiny"
    for f in ("config.json", "model.safetensors"):
        _blob(repo_dir, f, (tmp_path / "export" / f).read_bytes())
    _offline(monkeypatch, cache)
    ours = vitfas.load_model("hf-hub:someone/vit-fas-tiny")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(pixel_values=x).logits, atol=1e-5, rtol=0)
