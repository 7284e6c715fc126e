"""Knowledge distillation from a teacher (DeiT, Touvron et al., 2021).

The student is trained on ``(1 - alpha) * base_loss(student, labels) + alpha * distill``:

- ``hard``: ``CE(student_dist, argmax(teacher))`` — the teacher's decision as a label
  (DeiT's best setting).
- ``soft``: ``tau**2 * KL(softmax(teacher / tau) || softmax(student_dist / tau))``, averaged
  over the batch (Hinton et al., 2015). ``kl_reduction="numel"`` divides by
  ``batch * classes`` instead, as DeiT's reference code does.

``student_dist`` is the distillation head's logits for a DeiT student
(:class:`vitfas.models.deit.DistilledVisionTransformer` returns ``(cls, dist)`` in training)
and the ordinary logits for any other student.

The teacher is any ``nn.Module`` returning ``[B, classes]`` logits, a loaded
:class:`vitfas.bundle.Bundle`, or a string: a bundle folder, a checkpoint that
``vitfas.weights.load_model`` reads, or a registry name (loaded with its public weights).
:class:`Teacher` freezes it, runs it in eval mode without gradients, resizes and
re-normalises the student's batch to the teacher's own preprocessing, and reorders its
classes to the student's.

Hook for the ``vitfas train`` loop (``distill.*`` keys of the training YAML):

.. code-block:: python

    from vitfas.train.distill import DistillConfig, build_distillation, merge_outputs
    dcfg = DistillConfig(**yaml_cfg.get("distill", {}))   # teacher=None: no distillation
    criterion = build_distillation(dcfg, base_criterion, class_names, mean, std, img_size)
    ...
    outputs = model(images)
    loss = criterion(images, outputs, labels) if criterion else base_criterion(
        merge_outputs(outputs), labels)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitfas.errors import BadConfigError

log = logging.getLogger(__name__)

DistillKind = Literal["hard", "soft"]


@dataclass
class DistillConfig:
    """The ``distill`` section of a training config.

    Attributes:
        teacher: bundle folder, checkpoint path or registry name; ``None`` disables
            distillation.
        kind: ``"hard"`` (teacher argmax as label) or ``"soft"`` (KL with temperature).
        alpha: weight of the distillation term; the label loss gets ``1 - alpha``.
        tau: softmax temperature for ``soft`` (the KL term is scaled by ``tau**2``).
        kl_reduction: ``"batchmean"`` (KL per sample) or ``"numel"`` (DeiT's code:
            divided by batch * classes).
    """

    teacher: str | None = None
    kind: DistillKind = "hard"
    alpha: float = 0.5
    tau: float = 1.0
    kl_reduction: Literal["batchmean", "numel"] = "batchmean"

    def __post_init__(self) -> None:
        if self.kind not in ("hard", "soft"):
            raise BadConfigError(f"distill.kind must be 'hard' or 'soft', got {self.kind!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise BadConfigError(f"distill.alpha must be in [0, 1], got {self.alpha}")
        if self.tau <= 0:
            raise BadConfigError(f"distill.tau must be positive, got {self.tau}")
        if self.kl_reduction not in ("batchmean", "numel"):
            raise BadConfigError(
                f"distill.kl_reduction must be 'batchmean' or 'numel', got {self.kl_reduction!r}"
            )


def merge_outputs(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """One ``[B, classes]`` tensor from a model output: a DeiT ``(cls, dist)`` pair is averaged
    (what the model itself returns in eval mode); a tensor is returned as it is."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    outs = list(outputs)
    return torch.stack(outs).mean(0)


def split_outputs(
    outputs: torch.Tensor | Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class-head logits, distillation-head logits)``; a plain tensor serves as both."""
    if isinstance(outputs, torch.Tensor):
        return outputs, outputs
    outs = tuple(outputs)
    if len(outs) != 2:
        raise ValueError(f"expected logits or a (class, distillation) pair, got {len(outs)} "
                         "tensors")
    return outs[0], outs[1]


def hard_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``student [B, K]`` logits against ``argmax(teacher [B, K])``."""
    return F.cross_entropy(student, teacher.argmax(dim=1))


def soft_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    tau: float = 1.0,
    reduction: Literal["batchmean", "numel"] = "batchmean",
) -> torch.Tensor:
    """``tau**2 * KL(softmax(teacher/tau) || softmax(student/tau))`` for ``[B, K]`` logits.

    ``reduction="batchmean"`` averages the per-sample KL over the batch; ``"numel"``
    divides the summed KL by ``B * K`` (DeiT's reference implementation).
    """
    log_p_s = F.log_softmax(student / tau, dim=1)
    log_p_t = F.log_softmax(teacher / tau, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True)
    denom = student.shape[0] if reduction == "batchmean" else student.numel()
    return kl * (tau * tau) / denom


class Teacher(nn.Module):
    """A frozen teacher that takes the student's batch.

    Args:
        model: returns ``[B, K]`` logits (a ``(cls, dist)`` pair is averaged).
        input_size: ``(H, W)`` the teacher expects; the batch is resized (bilinear,
            antialiased) when it differs. ``None``: as given.
        student_mean, student_std, teacher_mean, teacher_std: per-channel normalisation of
            the student's batch and the teacher's; when both are known and differ the batch is
            re-normalised ``(x * s_std + s_mean - t_mean) / t_std``.
        class_index: teacher logit index for each student class (reorders the teacher's
            classes); ``None``: same order.
    """

    def __init__(
        self,
        model: nn.Module,
        input_size: Sequence[int] | None = None,
        student_mean: Sequence[float] | None = None,
        student_std: Sequence[float] | None = None,
        teacher_mean: Sequence[float] | None = None,
        teacher_std: Sequence[float] | None = None,
        class_index: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        self.renorm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        stats = (student_mean, student_std, teacher_mean, teacher_std)
        if all(s is not None for s in stats) and (
            list(student_mean) != list(teacher_mean) or list(student_std) != list(teacher_std)
        ):
            self.renorm = tuple(  # type: ignore[assignment]
                torch.tensor([float(v) for v in s]).view(1, -1, 1, 1) for s in stats
            )
        self.class_index = list(class_index) if class_index is not None else None
        self.train(False)

    def train(self, mode: bool = True) -> Teacher:
        """The teacher stays in eval mode whatever the caller asks."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` student batch -> ``[B, K]`` teacher logits in student class order."""
        if self.renorm is not None:
            s_mean, s_std, t_mean, t_std = (t.to(x) for t in self.renorm)
            x = (x * s_std + s_mean - t_mean) / t_std
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False,
                              antialias=True)
        logits = merge_outputs(self.model(x))
        if self.class_index is not None:
            logits = logits[:, self.class_index]
        return logits.float()


def _class_index(
    teacher_names: Sequence[str] | None, student_names: Sequence[str] | None, source: str
) -> list[int] | None:
    if not teacher_names or not student_names:
        return None
    t, s = list(teacher_names), list(student_names)
    if sorted(t) != sorted(s):
        raise BadConfigError(
            f"teacher {source} predicts classes {t} but the student is trained on {s}; a "
            "teacher must have the same classes"
        )
    return None if t == s else [t.index(n) for n in s]


def load_teacher(
    teacher: nn.Module | Any | str | Path,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    img_size: Sequence[int] | int | None = None,
    device: str | torch.device = "cpu",
) -> Teacher:
    """Wrap a teacher module, bundle, bundle folder, checkpoint or registry name.

    Args:
        teacher: see the module docstring.
        class_names, mean, std: the student's classes and normalisation, used to reorder a
            bundle teacher's classes and re-normalise the batch for it. A module teacher
            gets the batch resized to its ``config.img_size`` when it has one.
        img_size: the student's input size (informational; logged).
        device: where the teacher runs.

    Raises:
        BadConfigError: unknown teacher, or classes that do not match the student's.
    """
    from vitfas.bundle import Bundle, load_bundle

    log.debug("teacher for a student of input size %s", img_size)

    source = repr(teacher) if isinstance(teacher, (str, Path)) else type(teacher).__name__
    if isinstance(teacher, (str, Path)):
        p = Path(teacher).expanduser()
        if p.is_dir() and (p / "config.json").is_file() and _is_bundle(p / "config.json"):
            teacher = load_bundle(p, device=device)
        elif p.exists():
            try:
                from vitfas.weights import load_model  # type: ignore[attr-defined]
            except ImportError as exc:
                raise BadConfigError(
                    f"distill.teacher {str(p)!r} is not a bundle folder and this vitfas has no "
                    "checkpoint loader (vitfas.weights.load_model)"
                ) from exc
            teacher = load_model(p)
        else:
            from vitfas.models.registry import _REGISTRY
            from vitfas.weights import create_model

            name = str(teacher)
            if name not in _REGISTRY:
                raise BadConfigError(
                    f"distill.teacher {name!r} is neither an existing bundle folder or "
                    "checkpoint nor a registered model name"
                )
            log.info("distillation teacher: %s with its public weights", name)
            teacher = create_model(name, pretrained=True)
    if isinstance(teacher, Bundle):
        pre = teacher.preprocessing
        size = pre.get("img_size")
        wrapped = Teacher(
            teacher.model,
            input_size=size,
            student_mean=mean, student_std=std,
            teacher_mean=pre.get("mean"), teacher_std=pre.get("std"),
            class_index=_class_index(teacher.class_names, class_names, source),
        )
    elif isinstance(teacher, nn.Module):
        size = getattr(getattr(teacher, "config", None), "img_size", None)
        if isinstance(size, int):
            size = (size, size)
        wrapped = Teacher(teacher, input_size=size)
    else:
        raise BadConfigError(f"distill.teacher: cannot use a {type(teacher).__name__} as teacher")
    return wrapped.to(device)


def _is_bundle(config_json: Path) -> bool:
    import json

    try:
        cfg = json.loads(config_json.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "format_version" in cfg and "architecture" in cfg


class DistillationLoss(nn.Module):
    """``(1 - alpha) * base(cls_logits, labels) + alpha * distill(dist_logits, teacher(x))``.

    Args:
        base_criterion: ``(logits [B, K], labels) -> loss`` (labels may be soft, e.g. mixup).
        teacher: a :class:`Teacher` or any module mapping the student's batch to ``[B, K]``.
        kind, alpha, tau, kl_reduction: see :class:`DistillConfig`.

    After each call, ``last`` holds the two terms as floats (for logging).
    """

    def __init__(
        self,
        base_criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        teacher: nn.Module,
        kind: DistillKind = "hard",
        alpha: float = 0.5,
        tau: float = 1.0,
        kl_reduction: Literal["batchmean", "numel"] = "batchmean",
    ) -> None:
        super().__init__()
        DistillConfig(None, kind, alpha, tau, kl_reduction)  # validates
        self.base_criterion = base_criterion
        self.teacher = teacher
        self.kind, self.alpha, self.tau, self.kl_reduction = kind, alpha, tau, kl_reduction
        self.last: dict[str, float] = {}

    def forward(
        self,
        inputs: torch.Tensor,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Loss for the student's ``outputs`` on the batch ``inputs [B, C, H, W]``.

        Args:
            inputs: the batch the student saw (the teacher sees the same).
            outputs: ``[B, K]`` logits, or a DeiT ``(cls, dist)`` pair.
            labels: ``[B]`` class indices or ``[B, K]`` soft targets.

        Returns:
            A scalar loss.
        """
        cls_logits, dist_logits = split_outputs(outputs)
        base = self.base_criterion(cls_logits, labels)
        with torch.no_grad():
            t = self.teacher(inputs)
        if t.shape != dist_logits.shape:
            raise BadConfigError(
                f"teacher returns logits of shape {list(t.shape)} but the student "
                f"{list(dist_logits.shape)}; teacher and student need the same classes"
            )
        t = t.to(dist_logits.dtype)
        if self.kind == "hard":
            dist = hard_distillation_loss(dist_logits, t)
        else:
            dist = soft_distillation_loss(dist_logits, t, self.tau, self.kl_reduction)
        self.last = {"loss_base": float(base.detach()), "loss_distill": float(dist.detach())}
        return (1.0 - self.alpha) * base + self.alpha * dist


def build_distillation(
    cfg: DistillConfig | Mapping[str, Any] | None,
    base_criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    img_size: Sequence[int] | int | None = None,
    device: str | torch.device = "cpu",
) -> DistillationLoss | None:
    """The training criterion for ``cfg`` (``None`` when no teacher is configured).

    The call is ``criterion(images, model(images), labels)``; see the module docstring.
    """
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        valid = {f.name for f in dataclasses.fields(DistillConfig)}
        unknown = sorted(set(cfg) - valid)
        if unknown:
            raise BadConfigError(f"unknown distill keys {unknown}; valid keys: {sorted(valid)}")
        cfg = DistillConfig(**cfg)
    if not cfg.teacher:
        return None
    teacher = load_teacher(cfg.teacher, class_names, mean, std, img_size, device)
    log.info("distillation: %s, alpha %.3g, tau %.3g, teacher %s", cfg.kind, cfg.alpha, cfg.tau,
             cfg.teacher)
    return DistillationLoss(base_criterion, teacher, cfg.kind, cfg.alpha, cfg.tau,
                            cfg.kl_reduction)
