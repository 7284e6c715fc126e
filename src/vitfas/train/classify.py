"""The classification task (FAS live/spoof or any class set) for the training engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vitfas.train.scoring import dev_figures, make_scores


class ClassificationTask:
    """Cross-entropy on ``(image [B, 3, H, W], label [B])`` batches.

    Args:
        num_classes: logits per sample.
        live_index: index of the live class for FAS (enables EER/AUC/ACER at evaluation).
        label_smoothing: cross-entropy label smoothing.
        eval_attack_types: per-sample attack types of the evaluation set (APCER per type).
        progress: show a progress bar while scoring.
    """

    def __init__(self, num_classes: int, live_index: int | None = None,
                 label_smoothing: float = 0.0,
                 eval_attack_types: Sequence[str] | None = None,
                 progress: bool = False) -> None:
        self.num_classes, self.live_index = num_classes, live_index
        self.progress = progress
        self.label_smoothing = label_smoothing
        self.eval_attack_types = list(eval_attack_types) if eval_attack_types else None

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logits = model(x).float()
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().item()}

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
