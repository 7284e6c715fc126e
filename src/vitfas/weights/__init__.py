"""Weight interop: checkpoints from timm, Hugging Face and JAX into vitfas models.

- :func:`load_checkpoint` ``(path, model=None)``: any supported checkpoint -> vitfas keys.
- :func:`create_model` ``(name, pretrained=...)``: ``vitfas.create_model``, a registry model
  with its weights loaded through :func:`load_pretrained` (local path, ``True`` for the
  public checkpoint, or ``"hf-hub:org/repo"``).
- :func:`load_model` ``(path)``: build the architecture the checkpoint describes and load it.
- :func:`check_and_load`, :func:`save_model`: strict loading with a readable error, and
  vitfas's own format (``model.safetensors`` + ``config.json``).
- Converters: :func:`convert_timm_state_dict`, :func:`convert_hf_state_dict`,
  :func:`convert_npz`, and :func:`hf_v5_to_v4` for transformers-5 key names.
"""

from vitfas.weights.core import architecture_of, check_and_load, save_model
from vitfas.weights.hf import convert_hf_state_dict, hf_config_to_vit, hf_v5_to_v4
from vitfas.weights.hub import resolve_hub
from vitfas.weights.loader import (
    Source,
    adapt_pos_embed,
    infer_config,
    load_checkpoint,
    load_model,
    load_pretrained,
    read_source,
)
from vitfas.weights.npz import convert_npz, npz_config
from vitfas.weights.pretrained import create_model
from vitfas.weights.timm import convert_timm_state_dict

__all__ = [
    "Source",
    "adapt_pos_embed",
    "architecture_of",
    "check_and_load",
    "convert_hf_state_dict",
    "convert_npz",
    "convert_timm_state_dict",
    "create_model",
    "hf_config_to_vit",
    "hf_v5_to_v4",
    "infer_config",
    "load_checkpoint",
    "load_model",
    "load_pretrained",
    "npz_config",
    "read_source",
    "resolve_hub",
    "save_model",
]
