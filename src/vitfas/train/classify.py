"""The classification task (FAS live/spoof or any class set) for the training engine.

With a teacher (``distill.teacher`` in the ``vitfas train`` config) the training loss is
:class:`vitfas.train.distill.DistillationLoss`: ``(1 - alpha) * CE(s_c, y) + alpha *
L_distill(s_d, teacher(x))``, where ``s_c`` / ``s_d`` are a distilled DeiT's class and
distillation heads (the same logits for any other student). Without a teacher a distilled
DeiT trains the mean of its two heads on the labels (what it returns in eval mode), like
timm's ``set_distilled_training(False)``.

Deep pixel-wise supervision (``loss.pixel_weight`` > 0, after DeepPixBiS, George & Marcel,
2019): every patch token of the final layer is also classified, by the model's own head,
against the image's label (a live face is live everywhere, a printed or replayed face is
spoof everywhere), and ``pixel_weight`` times the mean per-patch cross-entropy is added to
the loss. A small set thus gets ``h * w`` labels per image, and the patch tokens must carry
the spoof evidence themselves instead of leaving it to the class token. It adds no
parameter and changes nothing at inference (the class token still decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vitfas.errors import BadConfigError
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
        pixel_weight: weight of the per-patch cross-entropy (deep pixel-wise supervision);
            0 turns it off. Needs a ViT-family model (``norm``, ``head``, ``num_prefix_tokens``).

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
                 distill: DistillConfig | None = None,
                 pixel_weight: float = 0.0) -> None:
        if pixel_weight < 0:
            raise BadConfigError(f"loss.pixel_weight must be >= 0, got {pixel_weight}")
        self.pixel_weight = float(pixel_weight)
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

    def patch_loss(self, model: nn.Module, tokens: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every patch token against its image's label.

        Args:
            model: the (unwrapped) ViT-family model whose ``head`` classifies the tokens
                (after ``fc_norm``, as the pooled token is).
            tokens: ``[B, N, D]`` output of the model's final ``norm``; the first
                ``model.num_prefix_tokens`` are not patches and are skipped.
            labels: ``[B]`` class indices.

        Returns:
            A scalar: ``CE(head(fc_norm(token)), label)`` averaged over ``B * (N - P)``.
        """
        P = int(model.num_prefix_tokens)
        patches = tokens[:, P:]
        B, L, _ = patches.shape
        if L == 0:
            raise BadConfigError("loss.pixel_weight: the model produced no patch tokens")
        logits = model.head(model.fc_norm(patches)).float()  # [B, L, C]
        return F.cross_entropy(logits.reshape(B * L, -1), labels.repeat_interleave(L))

    def _forward_with_tokens(self, model: nn.Module,
                             x: torch.Tensor) -> tuple[Any, torch.Tensor, nn.Module]:
        """``model(x)`` (through any DDP wrapper) and the final-norm tokens ``[B, N, D]``,
        caught by a forward hook on ``norm``."""
        base = model.module if isinstance(getattr(model, "module", None), nn.Module) else model
        missing = [a for a in ("norm", "head", "fc_norm", "num_prefix_tokens")
                   if not hasattr(base, a)]
        if missing:
            raise BadConfigError(
                f"loss.pixel_weight needs a ViT-family model (norm, head, fc_norm, "
                f"num_prefix_tokens); {type(base).__name__} has no {missing}"
            )
        caught: list[torch.Tensor] = []
        handle = base.norm.register_forward_hook(lambda _m, _i, out: caught.append(out))
        try:
            outputs = model(x)
        finally:
            handle.remove()
        if len(caught) != 1 or caught[0].ndim != 3:
            raise BadConfigError(
                f"loss.pixel_weight: expected one [B, N, D] output of {type(base).__name__}"
                f".norm per forward, got {[tuple(t.shape) for t in caught]}"
            )
        return outputs, caught[0], base

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        """Loss on ``(x [B, 3, H, W], y [B])``; logs ``acc`` (of the heads' mean), when
        distilling ``loss_ce`` and ``loss_distill`` (the two unweighted terms), and with
        pixel-wise supervision ``loss_pixel`` (unweighted)."""
        x, y = batch
        if self.pixel_weight > 0:
            outputs, tokens, base = self._forward_with_tokens(model, x)
        else:
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
        if self.pixel_weight > 0:
            loss_pixel = self.patch_loss(base, tokens, y)
            loss = loss + self.pixel_weight * loss_pixel
            logs["loss_pixel"] = float(loss_pixel.detach())
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
