"""The model bundle: the folder that ``train`` writes and ``eval``, ``predict``, ``explain``,
``export`` and ``serve`` read.

Layout::

    bundle/
      config.json        format_version, architecture, adapters, class_names, live_index,
                         preprocessing, threshold, calibration, training
      model.safetensors  weights (or, for an adapter-only bundle, just the adapter/head
                         weights plus ``base_checkpoint`` in config.json)
      metrics.json       dev and test figures as ``eval`` writes them (optional)
      README.md          a short model card generated from the above

``config.json`` may name another ``kind`` of bundle (no ``kind`` = ``"network"``, the layout
above). ``"lbp-svm"`` is the LBP + SVM baseline of :mod:`vitfas.baselines`, whose classifier
is ``model.skops`` instead of ``model.safetensors``; :func:`load_bundle` refuses it and
``vitfas.predict.load_predictor`` runs either kind.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitfas.errors import BadCheckpointError
from vitfas.models.registry import build_from_architecture
from vitfas.weights.bundle_model import FORMAT_VERSION, load_bundle_model, read_bundle_config

log = logging.getLogger(__name__)

NETWORK_KIND = "network"  # config.json "kind" of PyTorch-model bundles (the default)

__all__ = [
    "FORMAT_VERSION",
    "NETWORK_KIND",
    "Bundle",
    "BundleFields",
    "build_from_architecture",
    "bundle_kind",
    "load_bundle",
    "model_card",
    "read_bundle_config",
    "save_bundle",
]


class BundleFields:
    """What every kind of bundle reads from its ``config.json`` (``self.config``)."""

    config: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names", []))

    @property
    def live_index(self) -> int | None:
        """Index of the live class among the logits, ``None`` for non-FAS bundles."""
        return self.config.get("live_index")

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.config.get("preprocessing", {}))

    @property
    def threshold(self) -> float | None:
        """The operating threshold on P(live) chosen on dev data, if any."""
        t = self.config.get("threshold")
        return None if t is None else float(t["value"])


@dataclass
class Bundle(BundleFields):
    """A loaded bundle: the model (eval mode) and everything needed to use it faithfully.

    Attributes:
        model: the network, ``[B, 3, H, W] -> [B, num_classes]`` logits.
        path: the bundle folder.
        config: the whole parsed ``config.json``.
    """

    model: nn.Module
    path: Path
    config: dict[str, Any]

    @property
    def architecture(self) -> str:
        """What the network is: registry base and the settings that differ from it."""
        return architecture_name(self.config.get("architecture", {}))

    @property
    def temperature(self) -> float:
        """The softmax temperature T of the ``calibration`` block (1.0 when absent).

        Every consumer turns logits into probabilities as ``softmax(logits / T)``
        (:func:`vitfas.metrics.calibration.scaled_softmax`); the threshold is on that scale.

        Raises:
            BadCheckpointError: a recorded temperature that is not a finite number > 0.
        """
        cal = self.config.get("calibration") or {}
        raw = cal.get("temperature", 1.0)
        try:
            t = float(raw)
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t) or t <= 0:
            raise BadCheckpointError(f"{self.path}/config.json: calibration.temperature must "
                                     f"be a finite number > 0; found {raw!r}")
        return t

    @property
    def model_id(self) -> str:
        """A short identifier: :attr:`architecture` + the weights' hash prefix."""
        return f"{self.architecture}@{self.config.get('weights_sha256', '')[:12]}"


# head size is reported with the class names, not as part of the architecture
_NOT_ARCHITECTURE = frozenset({"num_classes"})


def architecture_name(arch: dict[str, Any]) -> str:
    """Name a bundle's network by what it is: ``base(key=value,...)``.

    ``base`` is the registry name it was built from; the keys are the config fields whose
    values differ from that registry entry (the overrides to pass to
    :func:`vitfas.create_model` to build it again), ``num_classes`` excepted. A square size
    shows as one number. Without a registry name the model class is used.

    >>> architecture_name({"name": "vit_tiny_patch16_224", "config": {"patch_size": 4,
    ...     "embed_dim": 192, "img_size": [32, 32], "num_classes": 2}})
    'vit_tiny_patch16_224(patch_size=4,img_size=32)'
    """
    name = arch.get("name")
    if not name:
        return str(arch.get("class") or "model")
    from vitfas.models.registry import get_entry

    try:
        base = get_entry(name).config.to_dict()
    except Exception:  # unknown name (e.g. a bundle from a newer vitfas): name as recorded
        return str(name)
    diffs = []
    for key, value in (arch.get("config") or {}).items():
        if key in _NOT_ARCHITECTURE or key not in base or _same(base[key], value):
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
            value = value[0]
        diffs.append(f"{key}={value}")
    return f"{name}({','.join(diffs)})" if diffs else str(name)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(
    out_dir: str | Path,
    model: nn.Module,
    *,
    class_names: list[str],
    live_index: int | None = None,
    preprocessing: dict[str, Any] | None = None,
    threshold: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    adapters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    base_checkpoint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle folder.

    Args:
        out_dir: folder to create (or overwrite files in).
        model: a registry-built model; its ``config`` attribute (a dataclass with
            ``to_dict``) and registry name (``model.registry_name`` if set) are recorded.
        class_names: logit order; ``live_index`` names the live class for FAS.
        preprocessing: crop recipe and normalisation (detector, scale, size, mean, std,
            colour order, frames per video).
        threshold: ``{"value": float, "criterion": "dev EER", "split": "dev"}`` (plus the
            dev ``margin`` for the EER criterion), on the calibrated P(live) scale.
        calibration: ``{"method": "temperature" | "none", "temperature": T, ...}``; consumers
            compute ``softmax(logits / T)``. ``None``: not recorded (T = 1).
        state_dict: weights to save instead of the full ``model.state_dict()`` (used for
            adapter-only bundles, with ``base_checkpoint`` naming the rest).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch_cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else vars(model.config)
    sd = state_dict if state_dict is not None else model.state_dict()
    sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    weights = out / "model.safetensors"
    save_file(sd, str(weights), metadata={"format": "pt"})
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "architecture": {
            "name": getattr(model, "registry_name", None),
            "class": type(model).__name__,
            "config": arch_cfg,
        },
        "adapters": adapters,
        "class_names": list(class_names),
        "live_index": live_index,
        "preprocessing": preprocessing or {},
        "threshold": threshold,
        "calibration": calibration,
        "training": training or {},
        "base_checkpoint": base_checkpoint,
        "weights_sha256": _sha256(weights),
    }
    if extra:
        config.update(extra)
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    (out / "README.md").write_text(model_card(config, metrics))
    return out


def model_card(config: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """A short Markdown model card from a bundle's config (and metrics, if any)."""
    arch = config.get("architecture", {})
    lines = [
        f"# {architecture_name(arch)}",
        "",
        f"- classes: {config.get('class_names')} (live index: {config.get('live_index')})",
    ]
    thr = config.get("threshold")
    if thr:
        lines.append(
            f"- threshold: {thr.get('value'):.6g} ({thr.get('criterion')}, chosen on "
            f"{thr.get('split')})"
        )
        margin = thr.get("margin") or {}
        if margin.get("score") is not None:  # the EER interval's width (docs/metrics.md)
            logit = margin.get("logit")
            lines.append(f"- {thr.get('split') or 'dev'} margin: {margin['score']:.4g}"
                         + ("" if logit is None else f" ({logit:.4g} in logits)"))
    cal = config.get("calibration") or {}
    if cal.get("method") == "temperature":
        lines.append(f"- calibration: temperature {cal.get('temperature'):.4g} fitted on "
                     f"{cal.get('split')} (P(live) = softmax(logits / T))")
    pre = config.get("preprocessing") or {}
    if pre:
        lines.append("- preprocessing: " + ", ".join(f"{k}={v}" for k, v in pre.items()))
    if config.get("adapters"):
        lines.append(f"- adapters: {config['adapters']}")
    if config.get("base_checkpoint"):
        lines.append(f"- base checkpoint: {config['base_checkpoint']}")
    tr = config.get("training") or {}
    if tr:
        lines.append("- training: " + ", ".join(f"{k}={v}" for k, v in tr.items()))
    if metrics:
        lines += ["", "## Metrics", "", "```json", json.dumps(metrics, indent=2, default=str),
                  "```"]
    return "\n".join(lines) + "\n"


def bundle_kind(config: dict[str, Any]) -> str:
    """What runs a bundle: ``"network"`` (a PyTorch model, the default when ``config.json``
    has no ``kind``) or another kind such as ``"lbp-svm"`` (:mod:`vitfas.baselines`)."""
    return str(config.get("kind") or NETWORK_KIND)


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a network bundle folder; the model is returned in eval mode on ``device``.

    Raises:
        BadCheckpointError: not a bundle, or a bundle of another kind (e.g. an LBP baseline,
            which ``vitfas predict`` runs but which has no network).
    """
    p = Path(path)
    config = read_bundle_config(p)
    kind = bundle_kind(config)
    if kind != NETWORK_KIND:
        raise BadCheckpointError(
            f"{p} is a {kind!r} bundle, not a network bundle; this command needs a network "
            "(vitfas predict runs both kinds)"
        )
    model = load_bundle_model(p, config)
    model.eval().to(device)
    return Bundle(model=model, path=p, config=config)
