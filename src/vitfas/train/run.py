"""``vitfas train``: configuration, model assembly, the training run, and the bundle.

A run folder (``out``) holds ``config.yaml`` (the resolved configuration), ``last.pt`` /
``best.pt`` (engine checkpoints), ``train_log.csv``, ``eval_log.csv``, ``tb/`` (TensorBoard)
and ``bundle/`` (the model bundle that ``eval``, ``predict``, ``explain``, ``export`` and
``serve`` take).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vitfas.errors import BadConfigError
from vitfas.train.classify import ClassificationTask
from vitfas.train.config import save_config, to_dict
from vitfas.train.data import (
    FAS_CLASSES,
    DataConfig,
    attack_types_of,
    balanced_sampler,
    build_split,
    class_names_for,
    fta_counts,
    prepared_recipe,
    unreadable_counts,
)
from vitfas.train.distill import DistillConfig, load_teacher
from vitfas.train.engine import Engine, TrainerConfig, resolve_device, seed_everything, unwrap
from vitfas.train.optim import OptimConfig
from vitfas.train.scoring import (
    choose_threshold,
    fit_calibration,
    live_scores,
    make_scores,
    split_report,
)

log = logging.getLogger(__name__)

__all__ = ["AdapterConfig", "LossConfig", "ModelConfig", "OutputConfig", "TrainConfig",
           "build_model", "run_training"]


@dataclass(frozen=True)
class ModelConfig:
    """YAML section ``model``.

    Attributes:
        name: registry name (``vitfas info --list``).
        pretrained: backbone weights: a checkpoint path in any format the loader reads
            (timm, Hugging Face, JAX npz, MAE encoder, vitfas), ``true`` for the registry's
            public checkpoint, or null for random init.
        trainable: ``head``, ``adapters`` (adapters + norms + head) or ``full``.
        drop_path_rate: stochastic depth.
        overrides: any other model-config field (e.g. ``embed_dim``, ``depth``).
        grad_checkpointing: trade compute for memory.
    """

    name: str = "vit_small_patch16_224"
    pretrained: bool | str | None = None
    trainable: Literal["head", "adapters", "full"] = "full"
    drop_path_rate: float = 0.1
    overrides: dict = field(default_factory=dict)
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class AdapterConfig:
    """YAML section ``adapters`` (omit it for no adapters); see
    :func:`vitfas.models.adapters.add_adapters`."""

    kind: Literal["serial", "parallel"] = "serial"
    bottleneck: int = 64
    positions: list[str] = field(default_factory=lambda: ["mlp"])
    scale: float = 1.0
    dropout: float = 0.0
    blocks: list[int] | None = None


@dataclass(frozen=True)
class LossConfig:
    """YAML section ``loss``.

    Attributes:
        label_smoothing: cross-entropy label smoothing.
        pixel_weight: deep pixel-wise supervision: weight of the per-patch live/spoof
            cross-entropy on the final patch tokens (see
            :class:`vitfas.train.classify.ClassificationTask`); 0 = off.
    """

    label_smoothing: float = 0.0
    pixel_weight: float = 0.0


@dataclass(frozen=True)
class OutputConfig:
    """YAML section ``output``.

    Attributes:
        weights: put the ``best`` (by ``trainer.best_metric``) or the ``last`` weights in
            the bundle.
        adapter_only: store only the trained scope's weights, naming ``model.pretrained``
            as the base checkpoint (needs a pretrained path and a scope other than full).
        threshold: how the operating threshold is chosen on dev (``eer``: the midpoint of
            the interval of thresholds reaching the dev EER, see ``docs/metrics.md``).
        calibrate: ``temperature`` fits a softmax temperature T on the dev logits (minimum
            NLL) before the threshold is chosen; the bundle records it and every consumer
            computes P(live) = softmax(logits / T). ``none`` (default): T = 1.
    """

    weights: Literal["best", "last"] = "best"
    adapter_only: bool = False
    threshold: Literal["eer"] = "eer"
    calibrate: Literal["none", "temperature"] = "none"


@dataclass(frozen=True)
class TrainConfig:
    """The whole ``vitfas train`` configuration.

    Attributes:
        out: the run folder.
        threads: CPU threads for torch (0 = torch's default); 1 is often fastest for tiny
            models on a busy machine.
    """

    out: str = "runs/train"
    threads: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    adapters: AdapterConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(best_metric="loss"))
    output: OutputConfig = field(default_factory=OutputConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


def _load_teacher(cfg: TrainConfig, class_names: list[str],
                  device: torch.device) -> nn.Module | None:
    """The frozen teacher of ``distill.teacher`` on the training ``device`` (``None``: off).

    Raises:
        BadConfigError: unknown teacher, or one whose classes differ from the student's.
    """
    d = cfg.distill
    if not d.teacher:
        return None
    teacher = load_teacher(d.teacher, class_names, cfg.data.mean, cfg.data.std,
                           cfg.data.img_size, device=device)
    n_out = getattr(getattr(teacher.model, "config", None), "num_classes", None)
    if isinstance(n_out, int) and n_out != len(class_names):
        raise BadConfigError(
            f"distill.teacher {d.teacher!r} predicts {n_out} classes but the student is trained "
            f"on {len(class_names)} ({class_names}); a teacher must have the same classes"
        )
    log.info("distillation: %s, alpha %.3g, tau %.3g, teacher %s", d.kind, d.alpha, d.tau,
             d.teacher)
    return teacher


def _distill_record(cfg: TrainConfig) -> dict[str, Any] | None:
    """The ``distill`` entry of the bundle's ``training`` block."""
    d = cfg.distill
    if not d.teacher:
        return None
    rec: dict[str, Any] = {"teacher": d.teacher, "kind": d.kind, "alpha": d.alpha,
                           "tau": d.tau, "kl_reduction": d.kl_reduction}
    p = Path(d.teacher).expanduser()
    if p.exists():
        rec["teacher_path"] = str(p.resolve())
        weights = p / "model.safetensors" if p.is_dir() else p
        if weights.is_file():
            rec["teacher_sha256"] = _sha256(weights)
    return rec


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """Registry model with backbone weights, adapters and the trainable scope applied."""
    from vitfas.models.adapters import add_adapters, set_trainable
    from vitfas.weights import create_model

    m = cfg.model
    kwargs: dict[str, Any] = {"drop_path_rate": m.drop_path_rate, **m.overrides}
    from vitfas.models.registry import get_entry

    fields = {f.name for f in dataclasses.fields(get_entry(m.name).config)}
    if "input_mean" in fields:  # a model that undoes the normalisation (colour channels)
        kwargs.setdefault("input_mean", tuple(cfg.data.mean))
        kwargs.setdefault("input_std", tuple(cfg.data.std))
    pretrained = m.pretrained or None
    if isinstance(pretrained, str) and not pretrained.startswith("hf-hub:") and \
            not Path(pretrained).exists():
        raise BadConfigError(f"model.pretrained: checkpoint {pretrained} does not exist")
    try:
        model = create_model(m.name, pretrained=pretrained, num_classes=num_classes,
                             img_size=cfg.data.img_size, **kwargs)
    except ImportError as exc:
        raise BadConfigError(
            f"model.pretrained={pretrained!r}: loading checkpoints needs the weights part of "
            f"vitfas ({exc})"
        ) from exc
    if m.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.adapters is not None:
        add_adapters(model, **dataclasses.asdict(cfg.adapters))
    set_trainable(model, m.trainable)
    return model


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_final_weights(engine: Engine, cfg: TrainConfig) -> nn.Module:
    """The model whose weights go into the bundle (best or last; EMA when evaluated)."""
    use_ema = engine.ema is not None and cfg.trainer.ema_eval
    best = engine.run_dir / "best.pt"
    model = engine.eval_model()
    if cfg.output.weights == "best" and best.is_file():
        sd = torch.load(best, map_location="cpu", weights_only=True)
        model.load_state_dict(sd["ema"] if use_ema else sd["model"])
    return model.eval()


# what a training run writes into its folder (``--overwrite`` removes these and only these)
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "train_log.csv", "eval_log.csv", "tb",
             "bundle")


def remove_run(out: Path) -> list[Path]:
    """Delete an earlier run's files (:data:`RUN_FILES`) from ``out``; returns what went."""
    import shutil

    gone = []
    for name in RUN_FILES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        gone.append(p)
    if gone:
        log.info("--overwrite: removed %s", ", ".join(str(p) for p in gone))
    return gone


def run_training(
    cfg: TrainConfig,
    resume: bool | str | Path | None = None,
    quiet: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train, choose the dev threshold, evaluate on test, write the bundle.

    ``rank``/``world_size`` default to torchrun's (the process group is started here);
    rank 0 alone scores dev/test and writes the bundle. ``overwrite`` deletes an earlier
    run's files in ``out`` (:data:`RUN_FILES`; nothing else there) and starts afresh.

    Returns:
        A summary: run folder, bundle path, parameter counts, best epoch, threshold and
        dev/test metrics.
    """
    if rank is None or world_size is None:
        from vitfas.distributed import init_distributed

        info = init_distributed(cfg.trainer.device, timeout_s=cfg.trainer.dist_timeout_s)
        rank, world_size = info.rank, info.world_size
        device = info.device  # cuda:LOCAL_RANK under torchrun
    else:
        device = resolve_device(cfg.trainer.device)
    out = Path(cfg.out)
    if overwrite and resume:
        raise BadConfigError("--overwrite starts afresh and --resume continues: pick one")
    if overwrite and rank == 0:
        remove_run(out)
    if not resume and (out / "last.pt").exists():
        raise BadConfigError(
            f"{out} already holds a run (last.pt); pass --resume to continue it, --overwrite "
            f"to start afresh there, or choose another out=..."
        )
    is_main = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.trainer.seed)
    class_names = class_names_for(cfg.data)
    fas = set(class_names) == set(FAS_CLASSES)
    if fas:
        class_names = list(FAS_CLASSES)
    live_index = class_names.index("live") if fas else None

    train_set = build_split(cfg.data, cfg.data.train_split, True, class_names)
    dev_set = build_split(cfg.data, cfg.data.dev_split, False, class_names)
    test_set = build_split(cfg.data, cfg.data.test_split, False, class_names)
    assert train_set is not None
    if cfg.output.calibrate == "temperature" and dev_set is None:
        raise BadConfigError(
            "output.calibrate: temperature fits T on the dev split, but there is none "
            f"(data.dev_split={cfg.data.dev_split!r}); set a dev split or output.calibrate: none"
        )

    model = build_model(cfg, len(class_names))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())

    task = ClassificationTask(
        len(class_names), live_index, cfg.loss.label_smoothing,
        attack_types_of(dev_set) if (fas and dev_set is not None) else None,
        progress=not quiet and is_main,
        teacher=_load_teacher(cfg, class_names, device), distill=cfg.distill,
        pixel_weight=cfg.loss.pixel_weight,
    )
    sampler = None
    if cfg.data.balance:
        sampler = balanced_sampler(train_set.targets, len(class_names))  # type: ignore[attr-defined]
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    engine = Engine(model, task, cfg.trainer, cfg.optim, train_set, out, eval_set=dev_set,
                    sampler=sampler, rank=rank, world_size=world_size, quiet=quiet,
                    run_config=cfg)
    result = engine.fit(resume=resume)

    summary: dict[str, Any] = {
        "run_dir": str(out),
        "trainable_params": n_train,
        "total_params": n_total,
        "trainable_share": n_train / max(n_total, 1),
        "steps": result.step,
        "epochs_done": result.epoch,
        "finished": result.finished,
        "best_metric": cfg.trainer.best_metric or None,
        "best_value": result.best_value,
        "best_epoch": result.best_epoch,
    }
    if not is_main:
        return summary

    final = _load_final_weights(engine, cfg)
    threshold = None
    preds = {}
    for split, ds in (("dev", dev_set), ("test", test_set)):
        if ds is not None:
            with torch.no_grad(), engine.autocast():
                preds[split] = task.predict(final, engine.make_loader(ds))
    calibration = _calibration(cfg, preds.get("dev"), live_index)
    temperature = calibration["temperature"]
    metrics: dict[str, Any] = {
        "level": "frame",
        "classification": {split: task.metrics(*p) for split, p in preds.items()},
    }
    if fas:
        splits = {}
        for split, ds in (("dev", dev_set), ("test", test_set)):
            if split not in preds:
                continue
            logits, y = preds[split]
            splits[split] = make_scores(
                live_scores(logits, live_index, temperature),
                (y == live_index).numpy().astype(int), attack_types_of(ds),
                _add_counts(fta_counts(cfg.data, getattr(cfg.data, f"{split}_split")),
                            unreadable_counts(ds)),
            )
        both = {k: v for k, v in splits.items() if v.n_live and v.n_attack}
        if "dev" in both:
            threshold = choose_threshold(both["dev"], cfg.output.threshold)
            metrics.update(split_report(both, threshold))
        else:
            log.warning("no dev split with both live and spoof samples: the bundle has no "
                        "operating threshold")
    summary_metrics = {
        split: {**_headline(metrics, split), **{k: m[k] for k in ("acc", "loss")}}
        for split, m in metrics["classification"].items()
    }

    preprocessing = {
        "detector": "none",
        "crop_scale": 1.0,
        # frames `vitfas predict` scores per video: data prepare's count, else 8
        "frames_per_video": 8,
        **prepared_recipe(cfg.data),
        **cfg.data.preprocessing,
        "img_size": [cfg.data.img_size, cfg.data.img_size],
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "colour_order": "RGB",
    }
    import vitfas

    data_files = {}
    if Path(cfg.data.path).is_file():
        data_files[str(cfg.data.path)] = _sha256(cfg.data.path)
    training = {
        "data": data_files or str(cfg.data.path),
        "data_format": cfg.data.format,
        "epochs": cfg.trainer.epochs,
        "steps": result.step,
        "finished": result.finished,
        "seed": cfg.trainer.seed,
        "pretrained": cfg.model.pretrained,
        "trainable": cfg.model.trainable,
        "trainable_params": n_train,
        "total_params": n_total,
        "weights": cfg.output.weights,
        "best_metric": cfg.trainer.best_metric or None,
        "best_epoch": result.best_epoch,
        "ema": cfg.trainer.ema_decay or None,
        "distill": _distill_record(cfg),
        "loss": to_dict(cfg.loss),
        "code_version": vitfas.__version__,
        "run_dir": str(out.resolve()),
    }
    from vitfas.bundle import save_bundle
    from vitfas.models.adapters import adapter_spec, scope_state_dict

    base = unwrap(engine.model)
    kwargs: dict[str, Any] = {}
    if cfg.output.adapter_only:
        pretrained = cfg.model.pretrained
        if not isinstance(pretrained, str) or cfg.model.trainable == "full":
            raise BadConfigError(
                "output.adapter_only needs model.pretrained to be a checkpoint path and "
                "model.trainable to be head or adapters"
            )
        kwargs = {"state_dict": scope_state_dict(final, cfg.model.trainable),
                  "base_checkpoint": pretrained if pretrained.startswith("hf-hub:")
                  else str(Path(pretrained).resolve())}
    final.registry_name = getattr(base, "registry_name", None)
    bundle_dir = save_bundle(
        out / "bundle", final, class_names=class_names, live_index=live_index,
        preprocessing=preprocessing, threshold=threshold, training=training,
        calibration=calibration, adapters=adapter_spec(base), metrics=metrics or None,
        **kwargs,
    )
    summary.update({"bundle": str(bundle_dir), "threshold": threshold,
                    "calibration": calibration, "metrics": summary_metrics})
    return summary


def _calibration(cfg: TrainConfig, dev: tuple[torch.Tensor, torch.Tensor] | None,
                 live_index: int | None) -> dict[str, Any]:
    """The bundle's ``calibration`` block: a temperature fitted on the dev ``(logits [N, C],
    labels [N])`` for ``output.calibrate: temperature``, else ``T = 1``.

    For FAS it also records the dev ECE of P(live) before and after (10 bins).

    Raises:
        BadConfigError: calibration asked for without a dev split.
    """
    if cfg.output.calibrate != "temperature":
        return {"method": "none", "temperature": 1.0}
    if dev is None or len(dev[1]) == 0:  # (run_training checks this before training)
        raise BadConfigError(f"output.calibrate: temperature: the dev split "
                             f"{cfg.data.dev_split!r} has no samples to fit T on")
    rec = fit_calibration(dev[0].float(), dev[1].numpy(), live_index,
                          cfg.data.dev_split or "dev")
    log.info("temperature calibration on dev: T = %.4g (NLL %.4g -> %.4g)", rec["temperature"],
             rec["nll_before"], rec["nll_after"])
    return rec


def _headline(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """APCER (max over attack types), BPCER, ACER at the dev threshold; EER, AUC, ECE."""
    m = (metrics.get("splits") or {}).get(split)
    if not m:
        return {}
    at = m["at_threshold"]
    return {"apcer": at["apcer_max"], "bpcer": at["bpcer"], "acer": at["acer"],
            "eer": m["eer"], "auc": m["auc"], "ece": m["calibration"]["ece"]}


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved configuration as plain data."""
    return to_dict(cfg)


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}
