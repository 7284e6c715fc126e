"""A reusable training engine: the loop that ``vitfas train`` and ``vitfas pretrain-mae`` share.

The engine owns everything that is not specific to a task: data order and resumable
sampling, the optimiser step (AdamW + warmup-cosine, see :mod:`vitfas.train.optim`), mixed
precision, gradient clipping and norm logging, a NaN/Inf guard, an optional EMA of the
weights, evaluation and best-checkpoint tracking, checkpoint/resume, and logging (tqdm, CSV,
TensorBoard). The loop is here; its pieces have their own modules: the resumable, seeded
data order in :mod:`vitfas.train.sampler`, RNG seeding and state capture in
:mod:`vitfas.train.rng`, the EMA in :mod:`vitfas.train.ema` and the CSV + TensorBoard
logs in :mod:`vitfas.train.run_writer`. A *task* object supplies the loss::

    class MyTask:
        def training_step(self, model, batch) -> tuple[Tensor, dict[str, float]]:
            ...                       # batch already on the device; return (loss, logs)
        def evaluate(self, model, loader) -> dict[str, float]:   # optional
            ...                       # model in eval mode, no grad; return metrics
        def state_dict(self) -> dict / load_state_dict(d)           # optional

    engine = Engine(model, MyTask(), TrainerConfig(...), OptimConfig(...), train_set,
                    run_dir, eval_set=dev_set)
    result = engine.fit(resume=None)     # or resume=True / a checkpoint path

Resuming is bit-for-bit: the data order of an epoch is a function of ``(seed, epoch)``,
each sample's augmentation is drawn from a generator seeded by ``(seed, epoch, position)``
(independent of worker count and prefetching), and the checkpoint holds the step, the
position inside the epoch, and the torch / CUDA / NumPy / Python RNG states used by the
model (dropout, drop-path).

Distributed-ready: the engine takes ``rank`` and ``world_size``; the sampler shards each
epoch's order by rank; every file write (checkpoints, logs, progress bars) goes through
:attr:`Engine.is_main`. No process-global state is changed except the RNG restore on resume.

Under ``torchrun`` (see :mod:`vitfas.train.distributed` and docs/distributed.md) the engine
starts the process group itself, wraps the model in DDP or FSDP2 (``trainer.strategy``),
accumulates gradients over ``trainer.accum_steps`` micro-batches (synchronising only on
the last), gives each rank its own model-side RNG stream, averages the logged loss over
ranks and stores the *global* sample position in checkpoints, so a run resumes on any
number of processes. Checkpoint saving is collective: every rank calls it.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from vitfas.errors import BadCheckpointError, BadConfigError, VitfasError
from vitfas.train import distributed as dist_utils
from vitfas.train.config import to_dict
from vitfas.train.distributed import unwrap
from vitfas.train.ema import ModelEma
from vitfas.train.optim import OptimConfig, WarmupCosine, build_optimizer
from vitfas.train.rng import forked_rng, mix_seeds, rng_state, seed_everything, set_rng_state
from vitfas.train.run_writer import RunWriter
from vitfas.train.sampler import RangeSampler, ResumableSampler, SeededDataset

log = logging.getLogger(__name__)

__all__ = [
    "Engine",
    "FitResult",
    "ModelEma",
    "NonFiniteLossError",
    "ResumableSampler",
    "RunWriter",
    "SeededDataset",
    "Task",
    "TrainerConfig",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "split_batch",
    "unwrap",
]
# ModelEma (train/ema.py), ResumableSampler and SeededDataset (train/sampler.py), RunWriter
# (train/run_writer.py), the RNG helpers (train/rng.py) and unwrap (train/distributed.py)
# live in their own modules and are re-exported here.

CHECKPOINT_FORMAT = "vitfas-train-state"


class NonFiniteLossError(VitfasError):
    """The loss (or the gradient norm) became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class TrainerConfig:
    """Loop settings (YAML section ``trainer``).

    Attributes:
        epochs: passes over the training data; the LR schedule spans all of them.
        max_steps: stop after this many optimiser steps (0 = no limit). Does not change the
            schedule, so a run stopped early and resumed matches an uninterrupted one.
        batch_size: per process.
        num_workers: DataLoader worker processes.
        precision: ``fp32``; ``bf16`` (autocast, CPU or GPU); ``fp16`` (autocast + gradient
            scaler, GPU only).
        grad_clip: clip the global gradient norm to this (0 = no clipping; the norm is
            logged either way).
        ema_decay: keep an exponential moving average of the weights (0 = off).
        ema_eval: evaluate (and pick the best checkpoint with) the EMA weights.
        log_every: write a training log row every this many steps.
        checkpoint_every: also save ``last.pt`` every this many steps (0 = epoch ends only).
        eval_every: evaluate every this many epochs (and always after the last).
        best_metric: evaluation metric that selects ``best.pt`` (e.g. ``eer``, ``acc``,
            ``loss``; on a tie the later epoch wins); empty = the last epoch is the best.
        best_mode: ``min`` or ``max`` for ``best_metric``.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds model init (by the caller), data order and augmentation.
        accum_steps: gradient accumulation: each optimiser step sums the gradients of this
            many micro-batches of ``batch_size`` (synchronised across processes only on the
            last). Global batch = ``batch_size * accum_steps * world_size``.
        strategy: ``ddp`` (DistributedDataParallel) or ``fsdp`` (FSDP2 ``fully_shard``
            per transformer block: sharded weights, gradients and optimiser state, for
            models that do not fit one GPU). Ignored in a single process.
        find_unused_parameters: DDP's option, for models with parameters that get no
            gradient in some steps.
        dist_timeout_s: under torchrun, how long a rank waits in a collective (e.g. for a
            rank that failed) before it gives up with an error naming the timeout.
    """

    epochs: int = 10
    max_steps: int = 0
    batch_size: int = 64
    num_workers: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    ema_eval: bool = True
    log_every: int = 10
    checkpoint_every: int = 0
    eval_every: int = 1
    best_metric: str = ""
    best_mode: Literal["min", "max"] = "min"
    device: str = "auto"
    seed: int = 0
    accum_steps: int = 1
    strategy: Literal["ddp", "fsdp"] = "ddp"
    find_unused_parameters: bool = False
    dist_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if not 0 < float(self.dist_timeout_s) < float("inf"):
            raise BadConfigError(f"trainer.dist_timeout_s must be a positive number of "
                                 f"seconds, got {self.dist_timeout_s}")
        if self.accum_steps < 1:
            raise BadConfigError(f"trainer.accum_steps must be >= 1, got {self.accum_steps}")
        if self.strategy not in ("ddp", "fsdp"):
            raise BadConfigError(f"trainer.strategy must be 'ddp' or 'fsdp', got "
                                 f"{self.strategy!r}")
        if self.epochs < 1:
            raise BadConfigError(f"trainer.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadConfigError(f"trainer.batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise BadConfigError(f"trainer.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.eval_every < 1 or self.log_every < 1:
            raise BadConfigError("trainer.eval_every and trainer.log_every must be >= 1")


class Task(Protocol):
    """What a training task provides to the :class:`Engine` (see the module docstring)."""

    def training_step(
        self, model: nn.Module, batch: Any
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


@runtime_checkable
class _Evaluates(Protocol):
    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]: ...


@dataclass
class FitResult:
    """What :meth:`Engine.fit` returns.

    Attributes:
        step: optimiser steps done in total.
        epoch: completed epochs.
        finished: all epochs done (False when stopped by ``max_steps``).
        best_value / best_epoch: the best ``best_metric`` and its epoch (1-based).
        last_checkpoint / best_checkpoint: paths (``None`` on non-main ranks).
        history: one dict of evaluation metrics per evaluated epoch.
    """

    step: int
    epoch: int
    finished: bool
    best_value: float | None
    best_epoch: int | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- utilities
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadConfigError(f"trainer.device={name!r} but CUDA is not available")
    return dev


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------- the engine
class Engine:
    """Runs a :class:`Task` over a dataset with the settings of a :class:`TrainerConfig`.

    Args:
        model: the network (already on CPU; the engine moves it to the device).
        task: provides ``training_step`` (and optionally ``evaluate``, ``state_dict``).
        cfg: loop settings.
        optim_cfg: optimiser and schedule settings.
        train_set: map-style dataset; items are whatever ``task.training_step`` takes after
            default collation.
        run_dir: where checkpoints and logs go (``last.pt``, ``best.pt``, ``train_log.csv``,
            ``eval_log.csv``, ``tb/``).
        eval_set: optional dataset for ``task.evaluate``.
        sampler: optional base sampler for training order (see :class:`ResumableSampler`).
        collate_fn: optional DataLoader collate function.
        rank, world_size: process position under ``torch.distributed``; ``None`` (the
            default): from torchrun's environment, starting the process group if needed
            (:func:`vitfas.distributed.init_distributed`); 0 and 1 without torchrun.
        quiet: no progress bars.
        run_config: the resolved run configuration, stored in checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        cfg: TrainerConfig,
        optim_cfg: OptimConfig,
        train_set: Dataset,
        run_dir: str | Path,
        *,
        eval_set: Dataset | None = None,
        sampler: Sampler | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        quiet: bool = False,
        run_config: Any = None,
    ) -> None:
        self.cfg, self.optim_cfg, self.task = cfg, optim_cfg, task
        self.run_dir = Path(run_dir)
        if rank is None or world_size is None:
            info = dist_utils.init_distributed(cfg.device, timeout_s=cfg.dist_timeout_s)
            rank, world_size, self.device = info.rank, info.world_size, info.device
        else:
            self.device = resolve_device(cfg.device)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.quiet = quiet
        self.run_config = to_dict(run_config) if run_config is not None else None
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise BadConfigError("trainer.precision=fp16 needs a CUDA device; use bf16 on CPU")
        self.distributed = world_size > 1 and dist_utils.is_distributed()
        if self.distributed and cfg.strategy == "fsdp" and cfg.ema_decay > 0:
            raise BadConfigError("trainer.ema_decay > 0 is not supported with "
                                 "trainer.strategy=fsdp (the EMA would need the full weights "
                                 "on every GPU); set trainer.ema_decay=0 or use ddp")
        if self.distributed and cfg.strategy == "fsdp" and cfg.precision == "fp16":
            raise BadConfigError("trainer.precision=fp16 is not supported with "
                                 "trainer.strategy=fsdp (untested gradient scaling of sharded "
                                 "gradients); use trainer.precision=bf16")
        # FSDP shards in place: keep an empty (meta) copy to rebuild full weights on rank 0
        self._template = copy.deepcopy(model).to("meta") \
            if self.distributed and cfg.strategy == "fsdp" else None
        self.full_model: nn.Module | None = None
        self.model = model.to(self.device)
        self.train_set, self.eval_set = train_set, eval_set
        self.collate_fn = collate_fn
        self.sampler = ResumableSampler(len(train_set), cfg.seed, sampler,  # type: ignore[arg-type]
                                        True, rank, world_size)
        self.step_batch = cfg.batch_size * cfg.accum_steps  # per process per optimiser step
        self.steps_per_epoch = len(self.sampler) // self.step_batch
        if self.steps_per_epoch < 1:
            raise BadConfigError(
                f"the training set has {len(self.sampler)} samples per process, fewer than "
                f"one batch of trainer.batch_size={cfg.batch_size} x trainer.accum_steps="
                f"{cfg.accum_steps}"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        if self.distributed:
            self.model = dist_utils.wrap_model(self.model, cfg.strategy, self.device,
                                               cfg.find_unused_parameters)
        self.optimizer = build_optimizer(unwrap(self.model), optim_cfg)
        self.schedule = WarmupCosine.from_config(optim_cfg, self.steps_per_epoch, cfg.epochs)
        self.scaler = (torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None)
        self.writer = RunWriter(self.run_dir, enabled=self.is_main)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, float]] = []
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ pieces
    def autocast(self) -> Any:
        """The autocast context for the configured precision."""
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def eval_model(self) -> nn.Module:
        """The weights used for evaluation: the EMA when enabled and ``ema_eval``.

        Under FSDP, after :meth:`fit`, rank 0 gets an unsharded copy (:attr:`full_model`)
        that it can run alone (e.g. to score and write the bundle).
        """
        if self.full_model is not None:
            return self.full_model
        if self.ema is not None and self.cfg.ema_eval:
            return self.ema.module
        return unwrap(self.model)

    def make_loader(self, dataset: Dataset, batch_size: int | None = None,
                    indices: range | None = None) -> DataLoader:
        """A deterministic loader in dataset order (for evaluation).

        Any randomness in the dataset's transform is seeded per item, so results do not
        depend on the worker count or on the training RNG. ``indices`` (a contiguous range)
        restricts it to those items, seeded as in the whole-set loader.
        """
        order: Sampler = ResumableSampler(len(dataset), self.cfg.seed, shuffle=False)  # type: ignore
        if indices is not None:
            order = RangeSampler(indices, self.cfg.seed)
        return DataLoader(SeededDataset(dataset), batch_size=batch_size or self.cfg.batch_size,
                          sampler=order, num_workers=self.cfg.num_workers,
                          collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(mix_seeds(self.cfg.seed, 5)))

    @property
    def global_batch(self) -> int:
        """Samples per optimiser step over all processes."""
        return self.step_batch * self.world_size

    def _train_loader(self, epoch: int, start_batch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start_batch * self.global_batch)
        return DataLoader(
            SeededDataset(self.train_set), batch_size=self.step_batch, sampler=self.sampler,
            num_workers=self.cfg.num_workers, collate_fn=self.collate_fn, drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(mix_seeds(self.cfg.seed, epoch, 4)),
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, full: bool = True) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit (``full=False``: the weights, EMA
        weights and counters only, as in ``best.pt``).

        Collective under ``torch.distributed`` (every rank must call it): the RNG states of
        all ranks are gathered and, under FSDP, the full weights and optimiser state.
        """
        msd, osd = dist_utils.full_state_dicts(self.model, self.optimizer if full else None,
                                               unwrap(self.model))
        sd: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "full": full,
            "model": msd,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_in_epoch": self.batch_in_epoch * self.global_batch,
            "global_batch": self.global_batch,
            "world_size": self.world_size,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "rng": rng_state(),
            "config": self.run_config,
            "trainer": to_dict(self.cfg),
        }
        if full:
            sd["optimizer"] = osd
            sd["optimizer_format"] = self._optim_format()
            sd["scaler"] = self.scaler.state_dict() if self.scaler is not None else None
            sd["rng_ranks"] = dist_utils.all_gather_objects(rng_state()) \
                if self.distributed else None
            if hasattr(self.task, "state_dict"):
                sd["task"] = self.task.state_dict()
        else:
            del sd["rng"]
        return sd

    def _optim_format(self) -> str:
        return "fqn" if dist_utils.is_fsdp(self.model) else "ids"

    def save_checkpoint(self, name: str, full: bool = True) -> Path | None:
        """Write ``run_dir/name`` atomically (main rank only; every rank must call it);
        ``full=False`` leaves out the optimiser, scaler and RNG state (not resumable)."""
        sd = self.state_dict(full) if self.is_main or self.distributed else None
        if not self.is_main or sd is None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(sd, tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a :meth:`state_dict` written by :meth:`save_checkpoint`."""
        p = Path(path)
        if not p.is_file():
            raise BadCheckpointError(f"cannot resume: checkpoint {p} does not exist")
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BadCheckpointError(f"cannot read training checkpoint {p}: {exc}") from exc
        if not isinstance(sd, dict) or sd.get("format") != CHECKPOINT_FORMAT:
            raise BadCheckpointError(f"{p} is not a vitfas training checkpoint")
        if not sd.get("full", True):
            raise BadCheckpointError(
                f"{p} holds weights only (like best.pt) and cannot be resumed from; use last.pt"
            )
        if self.run_config is not None and sd.get("config") is not None:
            old, new = _flatten(sd["config"]), _flatten(self.run_config)
            same_batch = int(sd.get("global_batch") or 0) == self.global_batch
            changed = sorted(k for k in set(old) | set(new)
                             if old.get(k) != new.get(k) and not k.endswith("max_steps")
                             and not (same_batch and k.endswith(("trainer.batch_size",
                                                                 "trainer.accum_steps"))))
            if changed:
                log.warning("resuming with a changed configuration (%s); the run will not "
                            "match an uninterrupted one", ", ".join(changed))
        fmt = sd.get("optimizer_format", "ids")
        if fmt != self._optim_format():
            raise BadCheckpointError(
                f"{p} was written with trainer.strategy="
                f"{'fsdp' if fmt == 'fqn' else 'ddp (or one process)'}; resume it with the "
                "same strategy"
            )
        dist_utils.load_full_state_dicts(self.model, self.optimizer, unwrap(self.model),
                                         sd["model"], sd["optimizer"])
        if self.scaler is not None and sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
        if self.ema is not None:
            if sd.get("ema") is None:
                raise BadCheckpointError(f"{p} has no EMA weights but trainer.ema_decay > 0")
            self.ema.module.load_state_dict(sd["ema"])
        if hasattr(self.task, "load_state_dict") and sd.get("task") is not None:
            self.task.load_state_dict(sd["task"])
        self.step, self.epoch = int(sd["step"]), int(sd["epoch"])
        self.batch_in_epoch = self._resume_position(sd)
        self.best_value, self.best_epoch = sd["best_value"], sd["best_epoch"]
        self.history = list(sd.get("history") or [])
        ranks = sd.get("rng_ranks")
        if not ranks and self.world_size == 1:
            set_rng_state(sd["rng"])
        elif ranks and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])
        else:  # another world size: fresh per-rank model-side RNG streams
            log.info("checkpoint from %d process(es), resuming on %d: dropout/drop-path RNG "
                     "reseeded per rank", len(ranks or [0]), self.world_size)
            seed_everything(mix_seeds(self.cfg.seed, self.rank, self.step, 6))
        log.info("resumed from %s at step %d (epoch %d, batch %d)", p, self.step,
                 self.epoch + 1, self.batch_in_epoch)

    def _resume_position(self, sd: Mapping[str, Any]) -> int:
        """Optimiser steps already done in the checkpoint's epoch, for this run's layout."""
        samples = sd.get("samples_in_epoch")
        if samples is None:  # checkpoint from before distributed support
            return int(sd["batch_in_epoch"])
        old_gb = int(sd.get("global_batch") or self.global_batch)
        if old_gb != self.global_batch:
            log.warning(
                "global batch changed from %d to %d (trainer.batch_size x trainer.accum_steps "
                "x processes = %d x %d x %d): the learning-rate schedule of the rest of the "
                "run differs from an uninterrupted one", old_gb, self.global_batch,
                self.cfg.batch_size, self.cfg.accum_steps, self.world_size)
        done, rest = divmod(int(samples), self.global_batch)
        if rest:
            log.warning("the checkpoint stopped %d samples into epoch %d, not a multiple of the "
                        "new global batch %d; resuming at sample %d (%d samples seen again)",
                        samples, int(sd["epoch"]) + 1, self.global_batch,
                        done * self.global_batch, rest)
        return done

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Run ``task.evaluate`` on the eval set with the evaluation weights.

        Under DDP, a task that also has ``predict(model, loader) -> Tensor | tuple of
        Tensors`` (first dimension = samples, in loader order) and
        ``evaluate_predictions(predictions) -> metrics`` is evaluated sharded: each rank
        predicts a contiguous share of the set, the predictions are gathered in order and
        the metrics computed from all of them (no sample dropped or repeated). Otherwise
        (and under FSDP, whose forward needs every rank) every rank evaluates the whole set.
        Rank 0's numbers are returned on all ranks, so they agree on the best checkpoint.
        """
        if self.eval_set is None or not isinstance(self.task, _Evaluates):
            return {}
        model = self.eval_model()
        was = model.training
        model.eval()
        sharded = self.distributed and not dist_utils.is_fsdp(self.model) and \
            hasattr(self.task, "predict") and hasattr(self.task, "evaluate_predictions")
        with forked_rng(), torch.no_grad(), self.autocast():
            if sharded:
                share = dist_utils.shard_indices(len(self.eval_set))  # type: ignore[arg-type]
                local = self.task.predict(  # type: ignore[attr-defined]
                    model, self.make_loader(self.eval_set, indices=share))
                preds = dist_utils.gather_concat(local)
                metrics = self.task.evaluate_predictions(preds)  # type: ignore[attr-defined]
            else:
                metrics = self.task.evaluate(model, self.make_loader(self.eval_set))
        model.train(was)
        return dist_utils.broadcast_object({k: float(v) for k, v in metrics.items()})

    def _is_better(self, value: float) -> bool:
        """Better or equal: on a tie the later (longer-trained) epoch wins, which matters
        when a metric saturates (a dev EER of 0 for several epochs)."""
        if self.best_value is None:
            return True
        if self.cfg.best_mode == "min":
            return value <= self.best_value
        return value >= self.best_value

    # ------------------------------------------------------------------ the loop
    def _guard(self, loss: torch.Tensor, grad_norm: torch.Tensor | None, epoch: int) -> None:
        bad_loss = not torch.isfinite(loss.detach()).all()
        bad_grad = grad_norm is not None and self.scaler is None and \
            not torch.isfinite(grad_norm).all()
        if bad_loss or bad_grad:
            what = "loss" if bad_loss else "gradient norm"
            raise NonFiniteLossError(
                f"training stopped at step {self.step + 1} (epoch {epoch + 1}): the {what} is "
                f"not finite (loss={loss.detach().float().item()!r}, grad_norm="
                f"{None if grad_norm is None else float(grad_norm)!r}); try a lower optim.lr, "
                f"trainer.grad_clip, or trainer.precision=fp32. Last checkpoint: "
                f"{self.run_dir / 'last.pt'}"
            )

    def train_step(self, batch: Any, epoch: int) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the logged values.

        ``batch`` holds ``batch_size * accum_steps`` samples; it is split into
        ``accum_steps`` micro-batches whose gradients are summed (each loss weighted by its
        share of the batch), synchronised across processes on the last one only. Logged
        values are averaged over micro-batches and processes.
        """
        lr = self.schedule.apply(self.optimizer, self.step)
        batch = to_device(batch, self.device)
        micro = split_batch(batch, self.cfg.accum_steps) if self.cfg.accum_steps > 1 \
            else [(batch, 1.0)]
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        log_sums: dict[str, float] = {}
        for i, (mb, weight) in enumerate(micro):
            with dist_utils.no_sync(self.model, i < len(micro) - 1):
                with self.autocast():
                    loss, logs = self.task.training_step(self.model, mb)
                if not self.distributed:  # distributed: guarded after the synchronisation
                    self._guard(loss, None, epoch)
                scaled = loss * weight if weight != 1.0 else loss
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            loss_sum = loss_sum + loss.detach().float() * weight
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0.0) + float(v) * weight
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self._trainable, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        keys = sorted(log_sums)
        if self.distributed:  # the same numbers on every rank: logs and the guard agree
            packed = torch.tensor([float(loss_sum), *(log_sums[k] for k in keys)],
                                  dtype=torch.float64, device=self.device)
            packed = dist_utils.all_reduce_mean(packed).tolist()
            loss_sum = torch.tensor(packed[0])
            log_sums = dict(zip(keys, packed[1:]))
        loss = loss_sum
        logs = log_sums
        self._guard(loss, grad_norm, epoch)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return {"loss": float(loss.detach()), "lr": lr, "grad_norm": float(grad_norm),
                **{k: float(v) for k, v in logs.items()}}

    def fit(self, resume: bool | str | Path | None = None) -> FitResult:
        """Train until all epochs are done or ``max_steps`` is reached.

        Args:
            resume: ``True`` resumes from ``run_dir/last.pt``; a path resumes from that file.
        """
        if resume:
            self.load_checkpoint(self.run_dir / "last.pt" if resume is True else resume)
        elif self.distributed:  # one model-side RNG stream (dropout, drop-path) per rank
            seed_everything(mix_seeds(self.cfg.seed, self.rank, 6))
        self.writer.start(self.step if resume else None)
        cfg = self.cfg
        self.model.train()
        stopped = False
        last_path: Path | None = None
        try:
            from tqdm.auto import tqdm

            while self.epoch < cfg.epochs and not stopped:
                epoch = self.epoch
                loader = self._train_loader(epoch, self.batch_in_epoch)
                bar = tqdm(loader, total=self.steps_per_epoch, initial=self.batch_in_epoch,
                           desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                           disable=self.quiet or not self.is_main, dynamic_ncols=True)
                t0 = time.perf_counter()
                for batch in bar:
                    values = self.train_step(batch, epoch)
                    self.batch_in_epoch += 1
                    if self.step % cfg.log_every == 0 or self.batch_in_epoch == \
                            self.steps_per_epoch:
                        self.writer.log("train_log.csv", self.step,
                                        {"epoch": epoch + 1, **values,
                                         "time": round(time.perf_counter() - t0, 3)}, "train")
                        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
                    if cfg.max_steps and self.step >= cfg.max_steps:
                        stopped = self.batch_in_epoch < self.steps_per_epoch or \
                            self.epoch + 1 < cfg.epochs
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        last_path = self.save_checkpoint("last.pt")
                bar.close()
                if self.batch_in_epoch < self.steps_per_epoch:  # stopped mid-epoch
                    last_path = self.save_checkpoint("last.pt")
                    break
                self._end_epoch(epoch)
                last_path = self.save_checkpoint("last.pt")
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
        finally:
            self.writer.close()
        if self._template is not None:  # collective: full weights into a plain copy on rank 0
            msd, _ = dist_utils.full_state_dicts(self.model, None, unwrap(self.model))
            if self.is_main:
                self.full_model = self._template.to_empty(device=self.device)
                self.full_model.load_state_dict(msd)
        best = self.run_dir / "best.pt"
        return FitResult(
            step=self.step, epoch=self.epoch, finished=self.epoch >= cfg.epochs,
            best_value=self.best_value, best_epoch=self.best_epoch,
            last_checkpoint=last_path,
            best_checkpoint=best if self.is_main and best.is_file() else None,
            history=self.history,
        )

    def _end_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        self.epoch = epoch + 1
        self.batch_in_epoch = 0
        if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
            return
        metrics = self.evaluate()
        if metrics:
            self.history.append({"epoch": epoch + 1, "step": self.step, **metrics})
            self.writer.log("eval_log.csv", self.step, {"epoch": epoch + 1, **metrics}, "eval")
            log.info("epoch %d: %s", epoch + 1,
                     ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if cfg.best_metric:
            if not metrics:
                return
            if cfg.best_metric not in metrics:
                raise BadConfigError(
                    f"trainer.best_metric={cfg.best_metric!r} is not among the evaluation "
                    f"metrics {sorted(metrics)}"
                )
            value = metrics[cfg.best_metric]
            if self._is_better(value):
                self.best_value, self.best_epoch = value, epoch + 1
                self.save_checkpoint("best.pt", full=False)
        else:
            self.best_epoch = epoch + 1
            self.save_checkpoint("best.pt", full=False)


def _batch_len(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, Mapping):
        values: Sequence[Any] = list(batch.values())
    elif isinstance(batch, (list, tuple)):
        values = batch
        if values and not any(isinstance(v, (torch.Tensor, Mapping, list, tuple))
                              for v in values):
            return len(values)  # a collated list of per-sample values (e.g. strings)
    else:
        return None
    for v in values:
        n = _batch_len(v)
        if n is not None:
            return n
    return None


def _take(batch: Any, lo: int, hi: int, n: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi] if batch.dim() and batch.shape[0] == n else batch
    if isinstance(batch, Mapping):
        return {k: _take(v, lo, hi, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        if batch and len(batch) == n and not any(
                isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in batch):
            return type(batch)(batch[lo:hi]) if isinstance(batch, list) else batch[lo:hi]
        return type(batch)(_take(v, lo, hi, n) for v in batch)
    return batch


def split_batch(batch: Any, parts: int) -> list[tuple[Any, float]]:
    """Split a collated batch into ``parts`` consecutive micro-batches along dim 0.

    Tensors whose first dimension is the batch size are sliced, so are collated lists of
    per-sample values (e.g. paths); anything else is passed to every micro-batch. Returns
    ``(micro_batch, weight)`` pairs, weight = the micro-batch's share of the samples.

    Raises:
        BadConfigError: the batch has fewer samples than ``parts``.
    """
    n = _batch_len(batch)
    if n is None:
        raise BadConfigError("trainer.accum_steps > 1 needs batches with a batch dimension "
                             f"(tensors or collated lists); got {type(batch).__name__}")
    if n < parts:
        raise BadConfigError(f"cannot split a batch of {n} samples into trainer.accum_steps="
                             f"{parts} micro-batches")
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [(_take(batch, lo, hi, n), (hi - lo) / n) for lo, hi in itertools.pairwise(bounds)]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}
