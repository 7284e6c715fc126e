"""``create_model(name, pretrained=...)``: a registry model with its weights loaded.

This is :func:`vitfas.create_model`. The registry (:mod:`vitfas.models.registry`) builds
architectures with random weights and knows nothing of checkpoints; this layer, which sees
both the registry and the loaders, adds the ``pretrained=`` path.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

from torch import nn

from vitfas.models.registry import create_model as _build
from vitfas.weights.loader import load_pretrained


def create_model(
    name: str,
    pretrained: bool | str | PathLike[str] | None = None,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally loading weights.

    Args:
        name: a registry name such as ``"vit_base_patch16_224"``.
        pretrained: ``None``/``False`` for random init; a path to a checkpoint in any format
            :func:`vitfas.weights.load_checkpoint` reads; ``True`` for the public checkpoint
            (fetched through ``huggingface_hub``); or ``"hf-hub:org/repo"``.
        num_classes: head size; the checkpoint's head is dropped when it differs.
        img_size: input size; the position embedding is resampled when it differs.
        overrides: any other config field.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        BadConfigError: unknown name or config keys.
        BadCheckpointError: unreachable hub, missing file or mismatching weights.
    """
    model = _build(name, num_classes=num_classes, img_size=img_size, **overrides)
    if pretrained:
        load_pretrained(model, name, pretrained)
    return model
