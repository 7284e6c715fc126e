"""Datasets for ``vitfas train``: FAS manifests (through :mod:`vitfas.data`) and ImageFolder
classification trees.

ImageFolder layout: ``ROOT/<split>/<class>/*.{jpg,png,...}``. For FAS, the classes are
``live`` and ``spoof`` (logit order ``["spoof", "live"]``, live index 1, as in every vitfas
bundle); other class names make it a generic classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from vitfas.errors import BadConfigError, BadDataError

log = logging.getLogger(__name__)

FAS_CLASSES = ["spoof", "live"]
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class DataConfig:
    """YAML section ``data``.

    Attributes:
        format: ``manifest`` (a vitfas manifest CSV with a ``split`` column) or
            ``imagefolder`` (``path/<split>/<class>/image``).
        path: the manifest CSV or the ImageFolder root.
        train_split, dev_split, test_split: split names (manifest ``split`` values or
            ImageFolder subfolders); an empty name skips that split.
        class_names: logit order; default ``["spoof", "live"]`` for manifests and for
            ImageFolder trees whose classes are exactly live/spoof, else sorted folder names.
        img_size: model input side (square).
        mean, std: normalisation (recorded in the bundle).
        augment: training augmentation, the fields of
            :class:`vitfas.data.transforms.AugmentConfig` (RandomResizedCrop scale, flips,
            colour jitter, ...); unknown keys are an error.
        balance: draw training samples class-balanced (with replacement).
        preprocessing: how the images were cropped, recorded in the bundle for inference
            (``detector``, ``crop_scale``, ``frames_per_video``); defaults say "whole image".
    """

    format: Literal["manifest", "imagefolder"] = "manifest"
    path: str = ""
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    class_names: list[str] | None = None
    img_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    augment: dict = field(default_factory=dict)
    balance: bool = False
    preprocessing: dict = field(default_factory=dict)


def build_transform(train: bool, cfg: DataConfig) -> Callable[[Any], torch.Tensor]:
    """Image -> normalised ``[3, S, S]`` float tensor (augmented with ``cfg.augment`` when
    ``train``); see :func:`vitfas.data.transforms.build_transforms`."""
    from vitfas.data.transforms import build_transforms

    return build_transforms(train, cfg.img_size, cfg.mean, cfg.std,
                            **(cfg.augment if train else {}))


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` -> ``(image tensor, label)`` with a chosen class order.

    Attributes ``rows`` (manifest-like dicts with ``path``, ``label``, ``attack_type``),
    ``class_names`` and ``targets`` mirror :class:`vitfas.data.datasets.ManifestDataset`.
    """

    def __init__(self, root: str | Path, class_names: Sequence[str] | None = None,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadDataError(f"ImageFolder split folder {self.root} does not exist")
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not found:
            raise BadDataError(f"{self.root} has no class subfolders (expected <class>/<image>)")
        if class_names is None:
            class_names = FAS_CLASSES if set(found) == set(FAS_CLASSES) else found
        missing = sorted(set(found) - set(class_names))
        if missing:
            raise BadDataError(
                f"{self.root}: class folders {missing} are not in data.class_names "
                f"{list(class_names)}"
            )
        self.class_names = list(class_names)
        self.transform = transform
        fas = set(self.class_names) == set(FAS_CLASSES)
        self.rows: list[dict[str, str]] = []
        for name in found:
            for p in sorted((self.root / name).rglob("*")):
                if p.suffix.lower() in IMAGE_EXTS:
                    self.rows.append({
                        "path": str(p), "label": name,
                        "attack_type": ("none" if name == "live" else name) if fas else name,
                    })
        if not self.rows:
            raise BadDataError(f"{self.root}: no images ({', '.join(IMAGE_EXTS)}) found")
        self.targets = [self.class_names.index(r["label"]) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from vitfas.data.io import load_image

        img = load_image(self.rows[i]["path"])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[i]


def class_names_for(cfg: DataConfig) -> list[str]:
    """The logit order the run will use."""
    if cfg.class_names:
        return list(cfg.class_names)
    if cfg.format == "manifest":
        return list(FAS_CLASSES)
    root = Path(cfg.path) / cfg.train_split
    if not root.is_dir():
        raise BadDataError(f"ImageFolder training split {root} does not exist")
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    return list(FAS_CLASSES) if set(found) == set(FAS_CLASSES) else found


def build_split(cfg: DataConfig, split: str, train: bool,
                class_names: Sequence[str]) -> Dataset | None:
    """The dataset of one split, or ``None`` when the split name is empty / has no rows
    (dev and test only; an empty training split is an error)."""
    if not split:
        return None
    if not cfg.path:
        raise BadConfigError("data.path is not set (a manifest CSV or an ImageFolder root)")
    transform = build_transform(train, cfg)
    if cfg.format == "imagefolder":
        root = Path(cfg.path) / split
        if not root.is_dir() and not train:
            log.warning("no %s split: %s does not exist", split, root)
            return None
        return drop_unreadable(ImageFolderDataset(root, class_names, transform), split)
    from vitfas.data.datasets import ManifestDataset

    if not Path(cfg.path).is_file():
        raise BadDataError(f"manifest {cfg.path} does not exist")
    rows = _manifest_rows(cfg.path)
    if not any(r.get("split", "") == split and not _is_fta(r) for r in rows):
        if train:
            raise BadDataError(
                f"manifest {cfg.path} has no usable rows with split={split!r} (splits found: "
                f"{sorted({r.get('split', '') for r in rows})})"
            )
        log.warning("manifest %s has no rows with split=%r; skipped", cfg.path, split)
        return None
    # failure-to-acquire rows have no crop: not trained on, counted by fta_counts instead
    return drop_unreadable(
        ManifestDataset(cfg.path, transform=transform, class_names=list(class_names),
                        split=split, skip_fta=True), split)


def drop_unreadable(ds: Any, split: str) -> Any:
    """Remove from ``ds.rows``/``ds.targets`` the images whose header fails
    :func:`vitfas.data.io.image_header` (missing, not an image, too many pixels), logging
    each with its reason, so one hostile file does not stop a training run. They are kept
    in ``ds.unreadable`` (path, reason) and ``ds.unreadable_rows``; dev/test scoring counts
    them as failures to acquire (:func:`unreadable_counts`). Videos and
    files corrupt beyond their header are left to the loader (a ``BadImageError`` naming
    the file)."""
    from vitfas.data.io import image_header, is_image_file
    from vitfas.data.manifest import resolve_path
    from vitfas.errors import BadImageError

    manifest = getattr(ds, "manifest_path", None)
    keep: list[int] = []
    bad: list[tuple[str, str]] = []
    bad_rows: list[dict[str, str]] = []
    for i, row in enumerate(ds.rows):
        p = resolve_path(manifest, row) if manifest else Path(row["path"])
        if is_image_file(p):
            try:
                image_header(p)
            except BadImageError as exc:
                bad.append((str(p), str(exc).split(": ", 1)[-1]))
                bad_rows.append(row)
                continue
        keep.append(i)
    if bad:
        log.warning("split %s: skipped %d unreadable image(s):\n%s", split, len(bad),
                    "\n".join(f"  {p}: {why}" for p, why in bad[:50]))
        if not keep:
            raise BadDataError(f"split {split}: every image is unreadable (first: "
                               f"{bad[0][0]}: {bad[0][1]})")
        ds.rows = [ds.rows[i] for i in keep]
        ds.targets = [ds.targets[i] for i in keep]
    ds.unreadable = bad
    ds.unreadable_rows = bad_rows
    return ds


def unreadable_counts(ds: Any) -> dict[str, int]:
    """The images :func:`drop_unreadable` removed from ``ds``, as failures to acquire
    ``{attack_type: count}`` (``none`` for live), to add to :func:`fta_counts`."""
    out: dict[str, int] = {}
    for r in getattr(ds, "unreadable_rows", []):
        kind = "none" if r.get("label") == "live" else (r.get("attack_type") or "attack")
        out[kind] = out.get(kind, 0) + 1
    return out


def _manifest_rows(path: str | Path) -> list[dict[str, str]]:
    from vitfas.data.manifest import read_manifest

    return read_manifest(path)


def _is_fta(row: dict[str, str]) -> bool:
    return str(row.get("fta", "")).strip().lower() in ("1", "true", "yes")


def fta_counts(cfg: DataConfig, split: str) -> dict[str, int]:
    """Failures to acquire in a manifest split (``fta=1`` rows, which have no crop), as
    ``{attack_type: count}`` with ``none`` for live; empty for ImageFolder data."""
    if cfg.format != "manifest" or not split:
        return {}
    out: dict[str, int] = {}
    for r in _manifest_rows(cfg.path):
        if r.get("split", "") == split and _is_fta(r):
            kind = "none" if r.get("label") == "live" else (r.get("attack_type") or "attack")
            out[kind] = out.get(kind, 0) + 1
    return out


def prepared_recipe(cfg: DataConfig) -> dict[str, Any]:
    """The crop recipe of a manifest made by ``vitfas data prepare`` (its ``prepare.json``
    beside the manifest), in the bundle's ``preprocessing`` names; empty when absent."""
    if cfg.format != "manifest" or not cfg.path:
        return {}
    from vitfas.data.prepare import recipe_of_manifest

    return recipe_of_manifest(cfg.path)


def attack_types_of(ds: Dataset) -> list[str]:
    """Per-sample attack type (``none`` for live) for APCER per attack type."""
    rows = getattr(ds, "rows", None)
    if rows is None:
        raise BadDataError(f"{type(ds).__name__} has no .rows; cannot tell attack types")
    return [str(r.get("attack_type") or r.get("label")) for r in rows]


def balanced_sampler(targets: Sequence[int], num_classes: int) -> torch.utils.data.Sampler:
    """Class-balanced sampling with replacement (one epoch = ``len(targets)`` draws)."""
    t = torch.as_tensor(list(targets))
    counts = torch.bincount(t, minlength=num_classes).clamp(min=1).double()
    weights = (1.0 / counts)[t]
    return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(t), replacement=True)
