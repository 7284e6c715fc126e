"""The classification task (FAS live/spoof or any class set) for the training engine.

With a teacher (``distill.teacher`` in the ``vitfas train`` config) the training loss is
:class:`vitfas.train.distill.DistillationLoss`: ``(1 - alpha) * CE(s_c, y) + alpha *
L_distill(s_d, teacher(x))``, where ``s_c`` / ``s_d`` are a distilled DeiT's class and
distillation heads (the same logits for any other student). Without a teacher a distilled
DeiT trains the mean of its two heads on the labels (what it returns in eval mode), like
timm's ``set_distilled_training(False)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vitfas.train.distill import DistillationLoss, merge_outputs
from vitfas.train.scoring import dev_figures, make_scores

if TYPE_CHECKING:
    from vitfas.train.distill import DistillConfig


class ClassificationTask:
    """Cross-entropy on ``(image [B, 3, H, W], label [B])`` batches.

    Args:
        num_classes: logits per sample.
        live_index: index of the live class for FAS (enables EER/AUC/ACER at evaluation).
        label_smoothing: cross-entropy label smoothing.
        eval_attack_types: per-sample attack types of the evaluation set (APCER per type).
        progress: show a progress bar while scoring.
        teacher: a frozen teacher mapping the student's batch ``[B, 3, H, W]`` to ``[B, C]``
            logits (:func:`vitfas.train.distill.load_teacher`); ``None``: labels only.
        distill: kind, alpha, tau and KL reduction of the distillation term (its
            ``teacher`` field is not read; the loaded ``teacher`` is). Default: hard,
            alpha 0.5.

    Attributes:
        distillation: the :class:`DistillationLoss` when a teacher is given, else ``None``.
            It holds the teacher, which is not part of the model: the engine's optimiser,
            EMA and checkpoints never see it.
    """

    def __init__(self, num_classes: int, live_index: int | None = None,
                 label_smoothing: float = 0.0,
                 eval_attack_types: Sequence[str] | None = None,
                 progress: bool = False,
                 teacher: nn.Module | None = None,
                 distill: DistillConfig | None = None) -> None:
        self.num_classes, self.live_index = num_classes, live_index
        self.progress = progress
        self.label_smoothing = label_smoothing
        self.eval_attack_types = list(eval_attack_types) if eval_attack_types else None
        self.distillation: DistillationLoss | None = None
        if teacher is not None:
            d = distill
            self.distillation = DistillationLoss(
                self.base_loss, teacher,
                **({} if d is None else {"kind": d.kind, "alpha": d.alpha, "tau": d.tau,
                                         "kl_reduction": d.kl_reduction}),
            )

    def base_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (with the configured label smoothing) of ``[B, C]`` logits."""
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        """Loss on ``(x [B, 3, H, W], y [B])``; logs ``acc`` (of the heads' mean) and, when
        distilling, ``loss_ce`` and ``loss_distill`` (the two unweighted terms)."""
        x, y = batch
        outputs = model(x)
        if isinstance(outputs, torch.Tensor):
            outputs = outputs.float()
        else:  # a distilled DeiT in training mode: (class head, distillation head)
            outputs = tuple(o.float() for o in outputs)
        logits = merge_outputs(outputs)
        logs: dict[str, float] = {}
        if self.distillation is not None:
            loss = self.distillation(x, outputs, y)
            last = self.distillation.last
            logs = {"loss_ce": last["loss_base"], "loss_distill": last["loss_distill"]}
        else:
            loss = self.base_loss(logits, y)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().item(), **logs}

    @torch.no_grad()
    def predict(self, model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, C] float32, targets [N])`` over a loader, in order."""
        from tqdm.auto import tqdm

        device = next(model.parameters()).device
        out, ys = [], []
        for x, y in tqdm(loader, desc="scoring", leave=False, disable=not self.progress):
            out.append(model(x.to(device)).float().cpu())
            ys.append(torch.as_tensor(y))
        return torch.cat(out), torch.cat(ys)

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor,
                attack_types: Sequence[str] | None = None) -> dict[str, float]:
        """Loss and accuracy; for FAS (both classes present) also EER and AUC."""
        out: dict[str, float] = {
            "loss": float(F.cross_entropy(logits, targets)),
            "acc": float((logits.argmax(1) == targets).float().mean()),
        }
        if self.live_index is None:
            return out
        scores = logits.softmax(1)[:, self.live_index].numpy().astype(np.float64)
        labels = (targets == self.live_index).numpy().astype(int)
        if labels.min() == labels.max():
            return out
        out.update(dev_figures(make_scores(scores, labels, attack_types)))
        return out

    def evaluate_predictions(self, preds: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """:meth:`metrics` of :meth:`predict`'s output (the engine's sharded evaluation)."""
        return self.metrics(*preds, self.eval_attack_types)

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """``loss``, ``acc`` (and ``eer``, ``auc`` for FAS) on the evaluation set."""
        logits, targets = self.predict(model, loader)
        return self.metrics(logits, targets, self.eval_attack_types)
