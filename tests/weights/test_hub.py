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
    assert "offline (HF_HUB_OFFLINE=1)" in msg and str(tmp_path / "empty") in msg
    assert "MODEL_NAME" not in msg


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


def _no_network_yet_online(monkeypatch, cache: Path) -> list:
    """Online mode (no HF_HUB_OFFLINE) with an empty cache and a hub that never answers:
    the probe's connection attempt hangs. Returns the list of network downloads tried."""
    import time as real_time

    from huggingface_hub import constants

    from vitfas.weights import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("VITFAS_HUB_PROBE_TIMEOUT", "1")

    def hang(*a, **k):
        real_time.sleep(30)
        raise TimeoutError("never")

    monkeypatch.setattr(hub.socket, "create_connection", hang)
    downloads: list = []
    import huggingface_hub

    real = huggingface_hub.hf_hub_download

    def spy(*a, **k):
        if not k.get("local_files_only"):
            downloads.append(a)
            raise AssertionError("a download was tried although the hub is unreachable")
        return real(*a, **k)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    return downloads


def test_unreachable_hub_fails_fast_with_one_message(tmp_path, monkeypatch):
    import time

    downloads = _no_network_yet_online(monkeypatch, tmp_path / "cache")
    repo = get_entry(NAME).hub_id
    t0 = time.monotonic()
    with pytest.raises(BadCheckpointError) as e:
        vitfas.create_model(NAME, pretrained=True)
    took = time.monotonic() - t0
    assert took < 5, f"took {took:.1f} s"
    assert downloads == []
    msg = str(e.value)
    assert repo in msg and str(tmp_path / "cache") in msg
    assert "cannot be reached" in msg and "huggingface.co:443" in msg
    assert f"create_model('{NAME}', pretrained='/path/to/model.safetensors')" in msg


def test_load_model_hints_name_the_real_model(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path / "empty")
    repo = get_entry(NAME).hub_id
    with pytest.raises(BadCheckpointError) as e:
        vitfas.load_model(f"hf-hub:{repo}")
    msg = str(e.value)
    assert "MODEL_NAME" not in msg
    assert f"create_model('{NAME}', pretrained='/path/to/model.safetensors')" in msg
    assert f"load_model('/path/to/{repo.split('/')[1]}')" in msg
    with pytest.raises(BadCheckpointError) as e:
        vitfas.load_model("hf-hub:someone/unknown-vit")
    assert "MODEL_NAME" not in str(e.value)
    assert "load_model('/path/to/unknown-vit')" in str(e.value)


def test_load_model_of_a_registry_name_points_to_create_model():
    with pytest.raises(BadCheckpointError,
                       match=r"'vit_base_patch16_224' is a model name.*"
                             r"create_model\('vit_base_patch16_224', pretrained=True\)"):
        vitfas.load_model("vit_base_patch16_224")
