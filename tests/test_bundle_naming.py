"""A bundle is named by what its network is: registry base + the settings that differ."""

from __future__ import annotations

from pathlib import Path

import torch

from vitfas.bundle import architecture_name, load_bundle, save_bundle
from vitfas.models import create_model


def test_bundle_named_by_base_and_overrides(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64,
                         depth=2, num_heads=2, num_classes=2)
    pre = {"detector": "none", "img_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}
    out = save_bundle(tmp_path / "b", model, class_names=["spoof", "live"], live_index=1,
                      preprocessing=pre)
    bundle = load_bundle(out)
    want = "vit_tiny_patch16_224(img_size=32,patch_size=4,embed_dim=64,depth=2,num_heads=2)"
    assert bundle.architecture == want
    assert bundle.model_id == f"{want}@{bundle.config['weights_sha256'][:12]}"
    assert (out / "README.md").read_text().splitlines()[0] == f"# {want}"
    # the web page and the API show Predictor.model_id, the eval report title bundle.model_id
    from vitfas.predict import Predictor

    assert Predictor(bundle).describe()["model_id"] == bundle.model_id


def test_unchanged_base_keeps_its_plain_name() -> None:
    cfg = create_model("vit_tiny_patch16_224", num_classes=2).config.to_dict()
    assert architecture_name({"name": "vit_tiny_patch16_224", "config": cfg}) == \
        "vit_tiny_patch16_224"  # the head size is not part of the architecture
    assert architecture_name({"name": None, "class": "VisionTransformer"}) == \
        "VisionTransformer"
    assert architecture_name({"name": "from_a_newer_vitfas", "config": {}}) == \
        "from_a_newer_vitfas"
