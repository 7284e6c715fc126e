"""Swin Transformer checkpoints into :class:`vitfas.models.swin.SwinTransformer` key names.

timm's Swin state dicts already use our names and load as they are. Checkpoints in the
original Microsoft layout (``swin_tiny_patch4_window7_224.pth`` from the Swin repository)
differ in three ways, all handled here:

- patch merging belongs to the *end* of a stage there (``layers.0.downsample`` ...) and to
  the *start* of the next stage here (``layers.1.downsample`` ...);
- the classifier is ``head.weight`` there, ``head.fc.weight`` here;
- they store the ``relative_position_index`` and ``attn_mask`` buffers, which we rebuild.

Weights are also unwrapped from a ``{"model": ...}`` or ``{"state_dict": ...}`` container.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_BUFFERS = ("relative_position_index", "attn_mask")


def is_original_swin_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for the Microsoft layout (stage 0 ends with a patch merging)."""
    return any(k.startswith("layers.0.downsample.") for k in state_dict)


def convert_swin_state_dict(
    state_dict: Mapping[str, torch.Tensor | Mapping[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` in vitfas/timm Swin key names (see the module docstring).

    Args:
        state_dict: a timm or original-Microsoft Swin state dict, possibly wrapped in
            ``{"model": ...}`` / ``{"state_dict": ...}``.

    Returns:
        A new dict without the rebuilt buffers, with stages and head renamed if needed.
    """
    sd: Mapping = state_dict
    for wrapper in ("model", "state_dict"):
        inner = sd.get(wrapper) if isinstance(sd, Mapping) else None
        if isinstance(inner, Mapping):
            sd = inner
    original = is_original_swin_layout(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in _BUFFERS:
            continue
        if original:
            k = re.sub(r"^layers\.(\d+)\.downsample\.",
                       lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k)
            if k.startswith("head.") and not k.startswith("head.fc."):
                k = "head.fc." + k[len("head."):]
        out[k] = v
    return out
