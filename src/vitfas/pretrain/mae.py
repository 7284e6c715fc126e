"""``vitfas pretrain-mae CONFIG.yaml [key=value ...]``: masked-autoencoder pre-training.

Self-supervised pre-training of a ViT encoder on unlabelled images (an image folder, searched
recursively, or a manifest CSV), run by the shared training engine
(:class:`vitfas.train.engine.Engine`): AdamW with warmup + cosine, mixed precision,
gradient clipping, EMA, checkpoints every N steps, bit-for-bit resume, CSV and TensorBoard
logs. Every ``vis.every`` steps a PNG shows original / masked / reconstruction for a fixed
set of images and a fixed mask, so the pictures of a run are comparable over time.

The run folder (``out``, the same key as ``vitfas train``) receives::

    config.yaml          the resolved configuration
    last.pt, best.pt     engine checkpoints (resume with --resume)
    train_log.csv, tb/   logs
    vis/step_000500.png  reconstructions
    mae/                 the whole MAE (vitfas format; vitfas.weights.mae.load_mae reads it)
    encoder/             the encoder as a VisionTransformer without head (vitfas format),
                         to fine-tune with ``vitfas train``
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from vitfas.distributed import get_rank
from vitfas.errors import BadConfigError, BadDataError, BadImageError
from vitfas.models.mae import MaskedAutoencoderViT
from vitfas.train.config import load_config, save_config
from vitfas.train.distributed import is_fsdp
from vitfas.train.engine import Engine, TrainerConfig, seed_everything, unwrap
from vitfas.train.optim import OptimConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class MAEModelSection:
    """YAML section ``model``.

    Attributes:
        name: a registered MAE (``mae_vit_base_patch16``, ``mae_vit_small_patch16``, ...).
        img_size: training resolution (square).
        mask_ratio: fraction of patches hidden per sample.
        norm_pix_loss: regress per-patch normalised pixels (the paper's better setting).
        init: start from a checkpoint instead of random weights: a Hugging Face ViTMAE folder
            or hub id, a vitfas MAE folder, or a reference ``.pth`` (see
            :func:`vitfas.weights.mae.load_mae`).
        overrides: any other :class:`~vitfas.models.mae.MAEConfig` field (``depth``,
            ``decoder_depth``, ``drop_path_rate``, ...).
    """

    name: str = "mae_vit_base_patch16"
    img_size: int = 224
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    init: str = ""
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MAEDataSection:
    """YAML section ``data``.

    Attributes:
        source: an image folder (searched recursively) or a manifest CSV (``path`` column,
            relative to the manifest's folder).
        split: with a manifest, keep only rows of this ``split`` (empty = every row).
        min_scale: lower bound of RandomResizedCrop's area scale (MAE: 0.2).
        hflip: random horizontal flips.
        mean, std: input normalisation.
    """

    source: str = ""
    split: str = ""
    min_scale: float = 0.2
    hflip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0.0 < self.min_scale <= 1.0:
            raise BadConfigError(f"data.min_scale must be in (0, 1], got {self.min_scale}")


@dataclass(frozen=True)
class MAEOptimSection(OptimConfig):
    """YAML section ``optim``: :class:`~vitfas.train.optim.OptimConfig` with MAE's defaults
    (AdamW betas (0.9, 0.95), weight decay 0.05, cosine to 0). ``lr`` is absolute: the paper
    uses ``1.5e-4 * batch_size / 256``."""

    lr: float = 1.5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    min_lr: float = 0.0
    warmup_epochs: float = 1.0


@dataclass(frozen=True)
class MAEVisSection:
    """YAML section ``vis``.

    Attributes:
        every: write ``vis/step_NNNNNN.png`` every this many steps (0 = only at the end).
        num_images: rows in the picture (the first images of the data, centre-cropped).
    """

    every: int = 500
    num_images: int = 4

    def __post_init__(self) -> None:
        if self.every < 0 or self.num_images < 1:
            raise BadConfigError("vis.every must be >= 0 and vis.num_images >= 1")


@dataclass(frozen=True)
class PretrainMAEConfig:
    """The whole ``pretrain-mae`` configuration (one YAML file)."""

    out: str = "runs/mae"
    model: MAEModelSection = field(default_factory=MAEModelSection)
    data: MAEDataSection = field(default_factory=MAEDataSection)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: MAEOptimSection = field(default_factory=MAEOptimSection)
    vis: MAEVisSection = field(default_factory=MAEVisSection)


# --------------------------------------------------------------------------- data
@dataclass
class ImageList:
    """Images found for pre-training, and what was skipped (with reasons)."""

    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _readable(path: Path) -> str | None:
    """``None`` if the image's header passes :func:`vitfas.data.io.image_header` (format,
    pixel limit), else the reason."""
    from vitfas.data.io import image_header

    if not path.exists():
        return "missing"
    try:
        image_header(path)
    except BadImageError as exc:
        return f"unreadable ({str(exc).split(': ', 1)[-1]})"
    return None


def collect_images(source: str | Path, split: str = "", quiet: bool = True) -> ImageList:
    """Every readable image under a folder, or listed in a manifest CSV.

    A manifest is read with :func:`vitfas.data.manifest.read_manifest` (the project's
    columns; paths relative to its folder). Unreadable, missing and non-image entries
    (videos) and failure-to-acquire rows (``fta=1``) are skipped and counted, not fatal.
    Only headers are read here (a progress bar shows for large sets unless ``quiet``); a
    file corrupt beyond its header fails later with a :class:`BadImageError` naming it.

    Raises:
        BadDataError: the source does not exist, a malformed manifest, or no usable image
            at all.
    """
    from vitfas.data.datasets import is_fta
    from vitfas.data.io import is_image_file
    from vitfas.data.manifest import read_manifest, resolve_path

    src = Path(source)
    if not str(source):
        raise BadDataError("data.source is empty: give an image folder or a manifest CSV")
    skipped: list[tuple[str, str]] = []
    if src.is_dir():
        candidates = sorted(p for p in src.rglob("*") if p.is_file())
        listed = [p for p in candidates if is_image_file(p)]
        skipped = [(str(p), "not an image file") for p in candidates
                   if not is_image_file(p) and not p.name.startswith(".")]
    elif src.is_file():
        rows = read_manifest(src)
        if split:
            found = sorted({r["split"] for r in rows})
            rows = [r for r in rows if r["split"] == split]
            if not rows:
                raise BadDataError(
                    f"manifest {src} has no row with split={split!r} (splits found: "
                    f"{', '.join(map(repr, found)) or 'none'}); pick one with data.split=NAME, "
                    f"or data.split= (empty) for every row"
                )
        listed = []
        for r in rows:
            p = resolve_path(src, r)
            if is_fta(r):
                skipped.append((str(p), "failure to acquire (fta=1)"))
            elif is_image_file(p):
                listed.append(p)
            else:
                skipped.append((str(p), "not an image file"))
    else:
        raise BadDataError(f"data.source {src} does not exist (expected an image folder or a "
                           f"manifest CSV)")
    from tqdm.auto import tqdm

    paths = []
    for p in tqdm(listed, desc="checking images", unit="img", leave=False,
                  disable=quiet or len(listed) < 2000):
        why = _readable(p)
        if why is None:
            paths.append(p)
        else:
            skipped.append((str(p), why))
    if not paths:
        what = f"split {split!r} of " if split else ""
        raise BadDataError(f"no readable image in {what}{src} ({len(skipped)} entries skipped)")
    return ImageList(paths, skipped)


def load_rgb(path: Path) -> Any:
    """An RGB PIL image, upright (EXIF applied); ``BadImageError`` naming the file."""
    from PIL import Image

    from vitfas.data.io import load_image

    return Image.fromarray(load_image(path))


def build_mae_transform(train: bool, img_size: int, data: MAEDataSection) -> nn.Module:
    """MAE's augmentation (RandomResizedCrop(scale=(min_scale, 1)), bicubic, flip) for
    training, resize + centre crop otherwise; then to a normalised ``[3, S, S]`` tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    bicubic = InterpolationMode.BICUBIC
    if train:
        ops: list[nn.Module] = [T.RandomResizedCrop(img_size, scale=(data.min_scale, 1.0),
                                                    interpolation=bicubic, antialias=True)]
        if data.hflip:
            ops.append(T.RandomHorizontalFlip())
    else:
        ops = [T.Resize(img_size, interpolation=bicubic, antialias=True), T.CenterCrop(img_size)]
    ops += [T.ToImage(), T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(data.mean), list(data.std))]
    return T.Compose(ops)


class ImageDataset(Dataset):
    """``paths[i]`` -> ``[3, S, S]`` float tensor (no labels: MAE is self-supervised)."""

    def __init__(self, paths: list[Path], transform: nn.Module) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_rgb(self.paths[i]))


# --------------------------------------------------------------------------- the task
class MAETask:
    """The engine task: the batch is ``[B, 3, S, S]`` images, the loss MAE's."""

    def training_step(
        self, model: nn.Module, batch: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch)
        return out.loss, {}


def render_reconstructions(
    model: MaskedAutoencoderViT,
    images: torch.Tensor,
    noise: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    path: str | Path,
    gap: int = 2,
    header: int = 14,
) -> Path:
    """Write a PNG grid: one row per image, columns original / masked / reconstruction.

    The reconstruction shows the visible patches from the input and the predicted pixels
    in the hidden ones. Size: width ``3*S + 4*gap``, height ``header + n*S + (n+1)*gap``.

    Args:
        model: the MAE (its mode is restored afterwards).
        images: ``[n, 3, S, S]`` normalised images on the model's device.
        noise: ``[n, N]`` masking noise (fixed across calls for comparable pictures).
    """
    from PIL import Image, ImageDraw

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            rec = model.reconstruct(images.float(), noise=noise)
    finally:
        model.train(was)
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)

    def to_uint8(x: torch.Tensor) -> np.ndarray:
        x = (x.float() * s + m).clamp(0, 1)
        return (x * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()

    mask = rec["mask"].unsqueeze(-1)  # [n, N, 1]
    grey = model.unpatchify(mask.expand(-1, -1, model.config.patch_dim)).bool()
    original = to_uint8(images)
    masked = to_uint8(rec["masked"])
    masked[grey.permute(0, 2, 3, 1).cpu().numpy()] = 96  # hidden patches: dark grey
    recon = to_uint8(rec["pasted"])
    n, S = images.shape[0], images.shape[-1]
    W, H = 3 * S + 4 * gap, header + n * S + (n + 1) * gap
    canvas = np.full((H, W, 3), 255, dtype=np.uint8)
    for i in range(n):
        y = header + gap + i * (S + gap)
        for j, col in enumerate((original, masked, recon)):
            x = gap + j * (S + gap)
            canvas[y : y + S, x : x + S] = col[i]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for j, (label, short) in enumerate((("original", "orig"), ("masked", "mask"),
                                        ("reconstruction", "recon"))):
        text = label if draw.textlength(label) <= S - 2 else short
        draw.text((gap + j * (S + gap) + 2, 1), text, fill=(0, 0, 0))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


class MAEEngine(Engine):
    """The shared engine plus a reconstruction PNG every ``vis.every`` steps."""

    def __init__(self, *args: Any, vis_every: int, vis_images: torch.Tensor,
                 vis_noise: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vis_every = vis_every
        self.vis_images, self.vis_noise = vis_images, vis_noise
        self.mean, self.std = mean, std
        self.vis_paths: list[Path] = []

    def visualise(self) -> Path | None:
        """Render the fixed images with the current weights (main rank only)."""
        if not self.is_main:
            return None
        if self.full_model is None and is_fsdp(self.model):
            return None  # sharded weights need every rank; rendered after fit (full_model)
        model = self.full_model if self.full_model is not None else unwrap(self.model)
        path = render_reconstructions(
            model, self.vis_images.to(self.device), self.vis_noise.to(self.device),
            self.mean, self.std, self.run_dir / "vis" / f"step_{self.step:06d}.png",
        )
        self.vis_paths.append(path)
        return path

    def train_step(self, batch: Any, epoch: int) -> dict[str, float]:
        values = super().train_step(batch, epoch)
        if self.vis_every and self.step % self.vis_every == 0:
            self.visualise()
        return values


# --------------------------------------------------------------------------- running
def build_model(cfg: PretrainMAEConfig) -> MaskedAutoencoderViT:
    """The MAE the configuration asks for (random init, or from ``model.init``)."""
    mc = cfg.model
    kw = {"img_size": mc.img_size, "mask_ratio": mc.mask_ratio,
          "norm_pix_loss": mc.norm_pix_loss, **mc.overrides}
    if mc.init:
        from vitfas.weights.mae import load_mae

        model = load_mae(mc.init, **kw)
        model.registry_name = mc.name
        return model
    from vitfas.models import create_model

    _check_model_name(mc)
    return create_model(mc.name, **kw)


def _check_model_name(mc: MAEModelSection) -> None:
    from vitfas.models import get_entry, list_models

    if mc.init:
        return
    if get_entry(mc.name).builder is not MaskedAutoencoderViT:
        raise BadConfigError(f"model.name={mc.name!r} is not an MAE; choose one of "
                             f"{list_models('mae_*')}")


def pretrain_mae(
    cfg: PretrainMAEConfig, resume: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Run MAE pre-training as configured; returns a summary dict (also the CLI's ``--json``).

    Raises:
        BadConfigError: bad configuration, or an existing run folder without ``resume``.
        BadDataError: no usable image.
    """
    run_dir = Path(cfg.out)
    if (run_dir / "last.pt").exists() and not resume:
        raise BadConfigError(
            f"{run_dir} already holds a run (last.pt); pass --resume to continue it or set "
            f"out= to a new folder"
        )
    if resume and not (run_dir / "last.pt").exists():
        raise BadConfigError(f"--resume: no checkpoint {run_dir / 'last.pt'} to resume from")
    _check_model_name(cfg.model)
    images = collect_images(cfg.data.source, cfg.data.split, quiet=quiet)
    if images.skipped:
        log.warning("skipped %d of %d entries in %s (first: %s: %s)", len(images.skipped),
                    len(images.skipped) + len(images.paths), cfg.data.source,
                    *images.skipped[0])
    seed_everything(cfg.trainer.seed)
    model = build_model(cfg)
    size = cfg.model.img_size
    train_set = ImageDataset(images.paths, build_mae_transform(True, size, cfg.data))
    vis_set = ImageDataset(images.paths[: cfg.vis.num_images],
                           build_mae_transform(False, size, cfg.data))
    vis_images = torch.stack([vis_set[i] for i in range(len(vis_set))])
    vis_noise = torch.rand(len(vis_set), model.config.num_patches,
                           generator=torch.Generator().manual_seed(cfg.trainer.seed + 1))
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(cfg, run_dir / "config.yaml")
    engine = MAEEngine(
        model, MAETask(), cfg.trainer, cfg.optim, train_set, run_dir, quiet=quiet,
        run_config=cfg, vis_every=cfg.vis.every, vis_images=vis_images, vis_noise=vis_noise,
        mean=cfg.data.mean, std=cfg.data.std,
    )
    result = engine.fit(resume=resume or None)
    last = engine.vis_paths[-1] if engine.vis_paths else None
    final_png = last if last is not None and last.name == f"step_{engine.step:06d}.png" \
        else engine.visualise()
    exported = export_run(engine)
    losses = _logged_losses(run_dir)
    return {
        "out": str(run_dir),
        "images": len(images.paths),
        "skipped": len(images.skipped),
        "steps": result.step,
        "epochs": result.epoch,
        "finished": result.finished,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        "vis": str(final_png) if final_png else None,
        **{k: str(v) for k, v in exported.items()},
    }


def export_run(engine: Engine) -> dict[str, Path]:
    """Save the (EMA, if enabled) weights as ``mae/`` and the encoder as ``encoder/``."""
    from vitfas.weights.core import save_model

    if not engine.is_main:
        return {}
    model = engine.eval_model()
    assert isinstance(model, MaskedAutoencoderViT)
    mae_dir = save_model(model, engine.run_dir / "mae")
    vit = model.to_vit(num_classes=0)
    vit.registry_name = None
    enc_dir = save_model(vit, engine.run_dir / "encoder")
    return {"mae": mae_dir, "encoder": enc_dir}


def _logged_losses(run_dir: Path) -> list[float]:
    p = run_dir / "train_log.csv"
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


# --------------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    """Add ``vitfas pretrain-mae``."""
    p = subparsers.add_parser(
        "pretrain-mae",
        help="masked-autoencoder pre-training on unlabelled images",
        description="Pre-train a ViT encoder as a masked autoencoder (MAE) on an image folder "
                    "or manifest. Settings come from CONFIG.yaml, then key.sub=value overrides "
                    "(e.g. trainer.epochs=100 data.source=crops/).",
    )
    p.add_argument("config", help="YAML configuration (sections: model, data, trainer, optim, "
                                  "vis; plus out, the run folder), or the name of a shipped "
                                  "config (vitfas config list)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override a config value, e.g. model.mask_ratio=0.6")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the run folder (out=) from its last.pt")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(PretrainMAEConfig, args.config, args.overrides)
    summary = pretrain_mae(cfg, resume=args.resume, quiet=getattr(args, "quiet", False))
    if get_rank() != 0:  # under torchrun rank 0 alone reports
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"MAE pre-training: {summary['steps']} steps, {summary['epochs']} epochs on "
              f"{summary['images']} images ({summary['skipped']} skipped)")
        if summary["first_loss"] is not None:
            print(f"loss: {summary['first_loss']:.4f} (first logged) -> "
                  f"{summary['last_loss']:.4f} (last)")
        print(f"run folder: {summary['out']}")
        print(f"encoder for fine-tuning: {summary.get('encoder')}")
        if summary["vis"]:
            print(f"reconstructions: {summary['vis']}")
    return 0


__all__ = [
    "MAEDataSection",
    "MAEEngine",
    "MAEModelSection",
    "MAEOptimSection",
    "MAETask",
    "MAEVisSection",
    "PretrainMAEConfig",
    "collect_images",
    "pretrain_mae",
    "render_reconstructions",
]
