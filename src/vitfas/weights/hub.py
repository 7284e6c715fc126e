"""Fetching public checkpoints through ``huggingface_hub`` (its cache, or the network).

``resolve_hub(repo_id)`` returns a local path: the snapshot folder when the repo's
``config.json`` is available too (so its own description of the weights is used), else
the weights file. The local cache is always consulted first, without any network. When the
files are not there, the hub is probed with one short connection attempt
(``VITFAS_HUB_PROBE_TIMEOUT`` seconds, default 3; through ``HTTPS_PROXY`` when set) before
anything is downloaded: offline (``HF_HUB_OFFLINE=1``, or no connection) the call fails
within seconds with one message naming the repo, the cache folder and how to load a
downloaded file instead -- not after a minute of the hub library's retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

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


def _hub_cache() -> str:
    cache = _cache_dir()
    if cache:
        return cache
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return "~/.cache/huggingface/hub"


def _endpoint() -> tuple[str, int, str]:
    """``(host, port, what)`` to probe: the HTTPS proxy when one is set, else the hub."""
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        proxy = os.environ.get(var, "").strip()
        if proxy:
            u = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if u.hostname:
                return u.hostname, u.port or 8080, f"proxy {u.hostname}:{u.port or 8080}"
    try:
        from huggingface_hub import constants

        endpoint = str(constants.ENDPOINT)
    except Exception:  # pragma: no cover
        endpoint = "https://huggingface.co"
    u = urlsplit(endpoint)
    port = u.port or (443 if u.scheme == "https" else 80)
    return u.hostname or "huggingface.co", port, f"{u.hostname}:{port}"


def hub_reachable(timeout_s: float | None = None) -> tuple[bool, str]:
    """One TCP connection attempt to the hub (or the HTTPS proxy), name lookup included,
    bounded to ``timeout_s`` (default ``VITFAS_HUB_PROBE_TIMEOUT`` or 3 s).

    Returns:
        ``(reachable, what)``: ``what`` says which host was tried and, when unreachable,
        why (e.g. "huggingface.co:443: timed out after 3 s").
    """
    if timeout_s is None:
        try:
            timeout_s = float(os.environ.get("VITFAS_HUB_PROBE_TIMEOUT", "3"))
        except ValueError:
            timeout_s = 3.0
    host, port, what = _endpoint()
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    t0 = time.monotonic()
    th = threading.Thread(target=attempt, daemon=True)  # getaddrinfo has no timeout
    th.start()
    th.join(timeout_s)
    if not result:
        return False, f"{what}: no answer after {time.monotonic() - t0:.0f} s"
    if result[0] is None:
        return True, what
    return False, f"{what}: {result[0]}"


def resolve_hub(repo_id: str, revision: str | None = None, model_name: str | None = None,
                alternative: str | None = None) -> Path:
    """Find in the cache (or download) a checkpoint repo's weights and config.

    Args:
        repo_id: ``"timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"`` or any HF ViT repo.
        revision: branch, tag or commit (default ``main``).
        model_name: the vitfas model name, used in the error's suggested command.
        alternative: the local-file command the error suggests instead (default
            ``create_model(model_name, pretrained='/path/to/model.safetensors')``).

    Returns:
        The snapshot folder (when ``config.json`` came along) or the weights file.

    Raises:
        BadCheckpointError: offline and not cached, unreachable, or no such repo/file; one
            message naming the repo, the cache folder and the local-file alternative.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise BadCheckpointError(f"huggingface_hub is needed to fetch {repo_id}: {exc}") from exc

    cache = _cache_dir()

    def fetch(fname: str, local_only: bool) -> Path:
        return Path(hf_hub_download(repo_id, fname, revision=revision, cache_dir=cache,
                                    local_files_only=local_only))

    def failure(why: str) -> BadCheckpointError:
        hint = alternative or (
            f"create_model({model_name!r}, pretrained='/path/to/model.safetensors')"
            if model_name else "vitfas.load_model('/path/to/downloaded/folder')")
        rev = revision or "main"
        return BadCheckpointError(
            f"cannot get the weights of Hugging Face Hub repo {repo_id!r}: {why}. They are "
            f"not in the cache folder {_hub_cache()} (HF_HUB_CACHE). Download "
            f"https://huggingface.co/{repo_id}/resolve/{rev}/model.safetensors on a machine "
            f"with network access and load the local file: {hint}")

    weights = _first_weights(fetch, local_only=True)
    online = weights is None and not _offline()
    if weights is None:
        if not online:
            raise failure("offline (HF_HUB_OFFLINE=1)")
        ok, what = hub_reachable()
        if not ok:
            raise failure(f"the hub cannot be reached ({what}; set HF_HUB_OFFLINE=1 to skip "
                          f"this check)")
        errors: list[str] = []
        weights = _first_weights(fetch, local_only=False, errors=errors)
        if weights is None:
            raise failure("; ".join(errors))
    try:
        fetch("config.json", local_only=not online)
    except Exception as exc:  # no config beside the weights: the weights alone will do
        log.info("%s: no config.json available (%s); using the weights file alone",
                 repo_id, type(exc).__name__)
        return weights
    return weights.parent


def _first_weights(fetch, local_only: bool, errors: list[str] | None = None) -> Path | None:
    """The first of :data:`WEIGHT_CANDIDATES` that ``fetch`` gets; failures (one line each,
    the hub library's wording trimmed to its first sentence) go to ``errors``."""
    for fname in WEIGHT_CANDIDATES:
        try:
            return fetch(fname, local_only)
        except Exception as exc:  # not cached, network, auth, missing repo/file
            if errors is not None:
                first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]
                errors.append(f"{fname}: {type(exc).__name__}: {first}")
    return None


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover
        return False
