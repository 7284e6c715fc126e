"""The network inside a model bundle folder: its ``config.json`` and its weights.

:mod:`vitfas.bundle` (one layer up) adds what a bundle means for face anti-spoofing (class
names, live index, preprocessing, threshold); this module only rebuilds the model, so that
:func:`vitfas.weights.load_model` can open a bundle folder without importing the bundle
layer. Layout and fields: docs/DESIGN.md ("The model bundle").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from vitfas.errors import BadCheckpointError
from vitfas.models.registry import build_from_architecture
from vitfas.weights.core import check_and_load

FORMAT_VERSION = 1


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of bundle folder ``path``, format version checked.

    Raises:
        BadCheckpointError: no ``config.json``, invalid JSON, or another format version.
    """
    p = Path(path)
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise BadCheckpointError(f"{p} is not a model bundle: {cfg_path} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise BadCheckpointError(f"{cfg_path}: invalid JSON ({exc})") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise BadCheckpointError(
            f"{cfg_path}: format_version {config.get('format_version')!r}, expected "
            f"{FORMAT_VERSION}"
        )
    return config


def load_bundle_model(path: str | Path, config: dict[str, Any]) -> nn.Module:
    """Build the bundle's architecture (plus adapters) and load ``model.safetensors``.

    Adapter-only bundles (``base_checkpoint`` in ``config``) take the remaining weights from
    that checkpoint. Returns the model in training mode on the CPU; the caller picks the
    mode and device.

    Raises:
        BadCheckpointError: a bundle of another ``kind``, unknown architecture, missing
            weights file, mismatching weights.
    """
    from safetensors.torch import load_file

    p = Path(path)
    kind = config.get("kind") or "network"
    if kind != "network":  # e.g. "lbp-svm" (vitfas.baselines): no network to build
        raise BadCheckpointError(f"{p} is a {kind!r} bundle, not a network bundle")
    model = build_from_architecture(config["architecture"])
    if config.get("adapters"):
        from vitfas.models import adapters as _adapters

        _adapters.add_adapters(model, **config["adapters"])
    weights = p / "model.safetensors"
    if not weights.is_file():
        raise BadCheckpointError(f"{p}: model.safetensors is missing")
    sd = load_file(str(weights))
    if config.get("base_checkpoint"):
        from vitfas.weights.loader import load_checkpoint

        base = load_checkpoint(config["base_checkpoint"], model)
        base.update(sd)
        sd = base
    check_and_load(model, sd, source=str(weights))
    return model
