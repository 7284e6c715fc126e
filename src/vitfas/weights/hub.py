"""Fetching public checkpoints through ``huggingface_hub`` (its cache, or the network).

``resolve_hub(repo_id)`` returns a local path: the snapshot folder when the repo's
``config.json`` is available too (so its own description of the weights is used), else
the weights file. Offline (``HF_HUB_OFFLINE=1``) only the local cache is consulted; when the
files are not there, or the hub cannot be reached, the error names the repo and how to load
a downloaded file instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
WEIGHT_CANDIDATES = ("model.safetensors", "pytorch_model.bin")


def split_repo(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` -> ``("org/name", "rev")``."""
    if spec.startswith(HF_HUB_PREFIX):
        spec = spec[len(HF_HUB_PREFIX):]
    repo, _, rev = spec.partition("@")
    return repo, (rev or None)


def _cache_dir() -> str | None:
    # huggingface_hub reads HF_HUB_CACHE once at import; honour a later change too.
    env = os.environ.get("HF_HUB_CACHE")
    return os.path.expanduser(os.path.expandvars(env)) if env else None


def resolve_hub(repo_id: str, revision: str | None = None, model_name: str | None = None) -> Path:
    """Download (or find in the cache) a checkpoint repo's weights and config.

    Args:
        repo_id: ``"timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"`` or any HF ViT repo.
        revision: branch, tag or commit (default ``main``).
        model_name: the vitfas model name, used in the error's suggested command.

    Returns:
        The snapshot folder (when ``config.json`` came along) or the weights file.

    Raises:
        BadCheckpointError: offline and not cached, unreachable, or no such repo/file; the
            message names the repo and the local-file alternative.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise BadCheckpointError(f"huggingface_hub is needed to fetch {repo_id}: {exc}") from exc

    cache = _cache_dir()
    errors = []
    weights = None
    for fname in WEIGHT_CANDIDATES:
        try:
            weights = Path(hf_hub_download(repo_id, fname, revision=revision, cache_dir=cache))
            break
        except Exception as exc:  # offline/not cached, network, auth, missing repo
            errors.append(f"{fname}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if weights is None:
        name = model_name or "MODEL_NAME"
        where = cache or "the default Hugging Face cache"
        raise BadCheckpointError(
            f"cannot get the weights of Hugging Face Hub repo {repo_id!r} (offline="
            f"{_offline()}, cache: {where}): " + "; ".join(errors) + ". "
            f"Download https://huggingface.co/{repo_id}/resolve/main/model.safetensors on a "
            f"machine with network access and load the local file: "
            f"create_model({name!r}, pretrained='/path/to/model.safetensors')"
        )
    try:
        hf_hub_download(repo_id, "config.json", revision=revision, cache_dir=cache)
    except Exception as exc:  # no config beside the weights: the weights alone will do
        log.info("%s: no config.json available (%s); using the weights file alone",
                 repo_id, type(exc).__name__)
        return weights
    return weights.parent


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover
        return False
