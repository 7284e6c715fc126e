"""Helpers for the predict / export / serve tests: a tiny FAS bundle made on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PRE = {
    "detector": "none",
    "crop_scale": 1.0,
    "img_size": [32, 32],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "colour_order": "RGB",
    "frames_per_video": 4,
}


def make_bundle(out: Path, threshold: float | None = 0.5, dynamic: bool = False) -> Path:
    from vitfas.bundle import save_bundle
    from vitfas.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2,
        num_heads=2, num_classes=2, dynamic_img_size=dynamic,
    )
    with torch.no_grad():  # a head with some spread so scores differ between images
        model.head.weight.normal_(0, 0.3)
        model.head.bias.zero_()
    thr = None if threshold is None else {"value": threshold, "criterion": "dev EER",
                                          "split": "dev"}
    return save_bundle(out, model, class_names=["spoof", "live"], live_index=1,
                       preprocessing=dict(PRE), threshold=thr)


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``vitfas.cli.main`` (it imports only the verb it runs)."""
    from vitfas import cli

    return cli.main(argv)
