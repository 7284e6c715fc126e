"""Loading a converted state dict into a model, and vitfas's own save format.

Own format: a folder with ``model.safetensors`` and ``config.json`` holding
``{"format": "vitfas", "architecture": {"name": ..., "class": ..., "config": {...}}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("head.", "head_dist.")


def _fmt(keys: Iterable[str], limit: int = 20) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_and_load(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    allow_head_mismatch: bool = False,
) -> None:
    """Load ``state_dict`` strictly, or raise an error listing every problem.

    Args:
        model: the target.
        state_dict: tensors already in vitfas key names and layouts.
        source: the file or folder it came from, named in errors.
        allow_head_mismatch: when the classifier head is missing from the checkpoint or
            has another number of classes, keep the model's freshly initialised head (logged)
            instead of failing.

    Raises:
        BadCheckpointError: naming missing, unexpected and wrongly shaped keys.
    """
    own = model.state_dict()
    sd = dict(state_dict)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [
        f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if allow_head_mismatch:
        def is_head(k: str) -> bool:
            return k.startswith(HEAD_PREFIXES)

        head_bad = [k for k in missing if is_head(k)] + [
            k for k in own if k in sd and is_head(k) and sd[k].shape != own[k].shape
        ]
        head_extra = [k for k in unexpected if is_head(k)]
        for k in head_bad + head_extra:
            sd.pop(k, None)
        if head_bad or head_extra:
            log.info("%s: classifier head not loaded (new head initialised): %s", source,
                     _fmt(head_bad + head_extra))
        missing = [k for k in missing if not is_head(k)]
        unexpected = [k for k in unexpected if not is_head(k)]
        shape = [s for s in shape if not is_head(s)]
    if missing or unexpected or shape:
        parts = [f"{source} does not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
        if shape:
            parts.append(f"wrongly shaped keys ({len(shape)}): {_fmt(shape)}")
        raise BadCheckpointError("\n  ".join(parts))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)


def architecture_of(model: nn.Module) -> dict:
    """``{"name", "class", "config"}`` describing how to rebuild ``model``."""
    cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
    return {
        "name": getattr(model, "registry_name", None),
        "class": type(model).__name__,
        "config": cfg,
    }


def save_model(model: nn.Module, out_dir: str | Path) -> Path:
    """Save ``model`` in vitfas's own format (``model.safetensors`` + ``config.json``)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = {"format": "vitfas", "architecture": architecture_of(model)}
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out
