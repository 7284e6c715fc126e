"""A torch ``Dataset`` over a manifest, and a class/domain-balancing sampler."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from vitfas.data.io import load_image
from vitfas.data.manifest import FAS_LABELS, read_manifest, resolve_path
from vitfas.data.video import is_video_file, read_frame
from vitfas.errors import BadDataError, NoFaceError

log = logging.getLogger(__name__)


def is_fta(row: Mapping[str, str]) -> bool:
    """True when a manifest row is a failure to acquire (``fta`` is 1/true/yes)."""
    return str(row.get("fta", "")).strip().lower() in ("1", "true", "yes")


def _default_transform() -> v2.Compose:
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class ManifestDataset(Dataset):
    """Items of a manifest as ``(image [3, H, W] float tensor, label int)``.

    Args:
        manifest: manifest CSV path, or a list of rows (then ``root`` is the folder relative
            paths start from).
        transform: maps an RGB uint8 ``[H, W, 3]`` array to a tensor (see
            :func:`vitfas.data.transforms.build_transforms`); default: to float in [0, 1].
        class_names: index order of labels. Default: ``["spoof", "live"]`` when every label is
            live/spoof (live index 1), else the sorted label names.
        split: keep only rows of this split (or any of these splits); ``None`` keeps all.
        root: base folder for relative paths when ``manifest`` is a list of rows.
        skip_fta: drop failure-to-acquire rows (``fta`` column ``1``/``true``/``yes``, as
            written by ``vitfas data prepare``). Training should pass True (they have no
            face crop); by default they are kept so evaluation can count them, and loading
            one raises :class:`~vitfas.errors.NoFaceError`.

    A row whose file is a video and whose ``frame`` is set reads that frame; image rows are
    read with :func:`vitfas.data.io.load_image` (EXIF applied).

    Attributes:
        rows: the manifest rows kept, in order.
        class_names: label names by index.
        targets: label index of every row.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[Mapping[str, str]],
        transform: Callable[[Any], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
        split: str | Iterable[str] | None = None,
        root: str | Path | None = None,
        skip_fta: bool = False,
    ) -> None:
        if isinstance(manifest, (str, Path)):
            self.manifest_path: Path | None = Path(manifest)
            rows = read_manifest(manifest)
            self.root = self.manifest_path.resolve().parent
        else:
            self.manifest_path = None
            rows = [dict(r) for r in manifest]
            self.root = Path(root) if root is not None else Path.cwd()
        if split is not None:
            keep = {split} if isinstance(split, str) else set(split)
            rows = [r for r in rows if r.get("split", "") in keep]
        where = str(self.manifest_path or "manifest rows")
        if skip_fta:
            n = len(rows)
            rows = [r for r in rows if not is_fta(r)]
            if len(rows) < n:
                log.info("%s: skipped %d failure-to-acquire rows (fta=1)", where, n - len(rows))
        if not rows:
            raise BadDataError(f"{where}: no rows" + (f" in split {split!r}" if split else ""))
        labels = sorted({r["label"] for r in rows})
        if class_names is None:
            class_names = list(FAS_LABELS) if set(labels) <= set(FAS_LABELS) else labels
        self.class_names = list(class_names)
        index = {c: i for i, c in enumerate(self.class_names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise BadDataError(
                f"{where}: label(s) {unknown} not among class_names {self.class_names}"
            )
        self.rows = rows
        self.targets = [index[r["label"]] for r in rows]
        self.transform = transform if transform is not None else _default_transform()

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, i: int) -> Path:
        """Absolute path of item ``i``'s file."""
        p = Path(self.rows[i]["path"])
        return p if p.is_absolute() else (self.root / p)

    def load(self, i: int):  # -> np.ndarray
        """Item ``i`` as an ``[H, W, 3]`` uint8 RGB array (before the transform)."""
        row = self.rows[i]
        p = resolve_path(self.manifest_path, row) if self.manifest_path else self.path(i)
        if is_fta(row):
            raise NoFaceError(
                f"{p}" + (f" frame {row['frame']}" if row.get("frame") else "")
                + ": failure to acquire (fta=1, no face crop); "
                "use ManifestDataset(..., skip_fta=True) to train without these rows")
        if is_video_file(p):
            if row.get("frame", "") == "":
                raise BadDataError(
                    f"{p}: a video row needs a frame index (run `vitfas data prepare` first)"
                )
            return read_frame(p, int(row["frame"]))
        return load_image(p)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), self.targets[i]

    @property
    def live_index(self) -> int | None:
        """Index of ``live`` in :attr:`class_names` (None for non-FAS labels)."""
        return self.class_names.index("live") if "live" in self.class_names else None


def balance_weights(
    rows: Sequence[Mapping[str, str]], by: Sequence[str] = ("label",)
) -> torch.Tensor:
    """Per-row weights ``1 / count(group)`` where the group is the tuple of ``by`` columns.

    Every group then has the same expected share of the samples drawn (``1 / #groups``),
    and within a group every row is equally likely.
    """
    keys = [tuple(r.get(c, "") for c in by) for r in rows]
    counts = Counter(keys)
    return torch.tensor([1.0 / counts[k] for k in keys], dtype=torch.double)


def balanced_sampler(
    dataset: ManifestDataset | Sequence[Mapping[str, str]],
    domains: bool = False,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> WeightedRandomSampler:
    """A sampler (with replacement) that balances classes and, with ``domains=True``, every
    (dataset, class) pair: each of the G groups gets ~1/G of the draws.

    Args:
        dataset: a :class:`ManifestDataset` or its rows.
        domains: balance over ``(dataset, label)`` instead of ``label``.
        num_samples: draws per epoch (default: the dataset length).
        generator: for reproducible draws.
    """
    rows = dataset.rows if isinstance(dataset, ManifestDataset) else dataset
    by = ("dataset", "label") if domains else ("label",)
    w = balance_weights(rows, by)
    return WeightedRandomSampler(
        w, num_samples or len(rows), replacement=True, generator=generator
    )
