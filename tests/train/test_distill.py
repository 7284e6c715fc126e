"""Distillation losses (checked by hand), teachers from modules and bundles, DeiT students."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitfas.errors import BadConfigError
from vitfas.models import create_model
from vitfas.models.deit import DeiTConfig, DistilledVisionTransformer
from vitfas.train.distill import (
    DistillationLoss,
    DistillConfig,
    Teacher,
    build_distillation,
    hard_distillation_loss,
    load_teacher,
    merge_outputs,
    soft_distillation_loss,
)


def test_hard_loss_by_hand() -> None:
    s = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.1, 0.9], [3.0, -1.0]])  # teacher says class 1, then class 0
    # CE row 0 on class 1: log(e^2 + 1) - 0; row 1 on class 0: log(1 + e) - 0
    want = (math.log(math.exp(2) + 1) + math.log(1 + math.e)) / 2
    assert hard_distillation_loss(s, t).item() == pytest.approx(want, abs=1e-6)


def test_soft_loss_by_hand_and_tau_squared_gradient() -> None:
    s = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    t = torch.tensor([[0.0, 2.0, 0.0]])
    tau = 2.0

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x / tau) for x in v]
        return [x / sum(e) for x in e]

    ps, pt = softmax([1.0, 0.0, -1.0]), softmax([0.0, 2.0, 0.0])
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    loss = soft_distillation_loss(s, t, tau=tau)
    assert loss.item() == pytest.approx(tau * tau * kl, abs=1e-6)
    assert soft_distillation_loss(s, t, tau, "numel").item() == pytest.approx(
        tau * tau * kl / 3, abs=1e-6)
    # d/ds [tau^2 KL] = tau * (softmax(s/tau) - softmax(t/tau)) — the reason for tau^2
    loss.backward()
    want = [tau * (a - b) for a, b in zip(ps, pt)]
    torch.testing.assert_close(s.grad[0], torch.tensor(want), rtol=0, atol=1e-6)
    assert soft_distillation_loss(t, t, tau=3.0).item() == pytest.approx(0.0, abs=1e-7)


class _Fixed(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]]


def test_loss_uses_class_head_for_labels_and_dist_head_for_teacher() -> None:
    cls = torch.tensor([[1.0, -1.0], [0.5, 0.2]])
    dist = torch.tensor([[-2.0, 2.0], [0.0, 3.0]])
    teacher_logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1])
    crit = DistillationLoss(nn.CrossEntropyLoss(), _Fixed(teacher_logits), "hard", alpha=0.3)
    loss = crit(torch.zeros(2, 3, 4, 4), (cls, dist), labels)
    want = 0.7 * F.cross_entropy(cls, labels) + 0.3 * F.cross_entropy(dist, torch.tensor([0, 1]))
    torch.testing.assert_close(loss, want)
    assert set(crit.last) == {"loss_base", "loss_distill"}
    # a plain (non-DeiT) student: the same logits serve both terms
    soft = DistillationLoss(nn.CrossEntropyLoss(), _Fixed(teacher_logits), "soft", 0.5, 2.0)
    want = 0.5 * F.cross_entropy(cls, labels) + 0.5 * soft_distillation_loss(
        cls, teacher_logits, 2.0)
    torch.testing.assert_close(soft(torch.zeros(2, 3, 4, 4), cls, labels), want)
    with pytest.raises(BadConfigError, match="same classes"):
        crit(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), labels)
    torch.testing.assert_close(merge_outputs((cls, dist)), (cls + dist) / 2)


def test_teacher_from_bundle_adapts_size_normalisation_and_class_order(tmp_path) -> None:
    from vitfas.bundle import save_bundle

    t_model = create_model("vit_tiny_patch16_224", num_classes=2, img_size=48, depth=1,
                           patch_size=16)
    t_mean, t_std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    save_bundle(tmp_path / "teacher", t_model, class_names=["live", "spoof"], live_index=0,
                preprocessing={"img_size": [48, 48], "mean": t_mean, "std": t_std})
    s_mean, s_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    teacher = load_teacher(str(tmp_path / "teacher"), class_names=["spoof", "live"],
                           mean=s_mean, std=s_std)
    x = torch.randn(2, 3, 32, 32)
    raw = x * torch.tensor(s_std).view(1, 3, 1, 1) + torch.tensor(s_mean).view(1, 3, 1, 1)
    xt = (raw - torch.tensor(t_mean).view(1, 3, 1, 1)) / torch.tensor(t_std).view(1, 3, 1, 1)
    xt = F.interpolate(xt, size=(48, 48), mode="bilinear", align_corners=False, antialias=True)
    t_model.eval()
    with torch.no_grad():
        want = t_model(xt)[:, [1, 0]]
    torch.testing.assert_close(teacher(x), want, rtol=0, atol=1e-5)
    teacher.train()
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())

    with pytest.raises(BadConfigError, match="same classes"):
        load_teacher(str(tmp_path / "teacher"), class_names=["spoof", "live", "other"])


def test_build_distillation_config_handling() -> None:
    base = nn.CrossEntropyLoss()
    assert build_distillation(None, base) is None
    assert build_distillation({}, base) is None
    with pytest.raises(BadConfigError, match="valid keys"):
        build_distillation({"teacher": "x", "temperature": 2}, base)
    with pytest.raises(BadConfigError, match="neither an existing bundle"):
        build_distillation({"teacher": "no_such_model_or_folder"}, base)
    with pytest.raises(BadConfigError, match="kind"):
        DistillConfig(teacher="x", kind="medium")
    teacher = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, depth=1)
    crit = DistillationLoss(base, load_teacher(teacher), "soft", 0.5, 2.0)
    assert isinstance(crit.teacher, Teacher)


def test_deit_student_learns_the_teacher() -> None:
    """A few steps of hard distillation teach the distillation head the teacher's decisions
    on inputs whose labels say something else: the loss is doing what it claims."""
    torch.manual_seed(0)
    cfg = DeiTConfig(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                     num_classes=2)
    student = DistilledVisionTransformer(cfg)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    x = torch.randn(16, 3, 16, 16)
    labels = torch.zeros(16, dtype=torch.long)  # labels say "class 0" everywhere
    crit = DistillationLoss(nn.CrossEntropyLoss(), Teacher(teacher), "hard", alpha=0.5)
    t_pred = teacher(x).argmax(1)
    assert 0 < int(t_pred.sum()) < 16
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    student.train()
    for _ in range(30):
        opt.zero_grad()
        loss = crit(x, student(x), labels)
        loss.backward()
        opt.step()
    student.eval()
    with torch.no_grad():
        f = student.forward_features(x)
        dist_pred = student.head_dist(f[:, 1]).argmax(1)
        cls_pred = student.head(f[:, 0]).argmax(1)
    assert (dist_pred == t_pred).float().mean() >= 0.9  # the dist head follows the teacher
    assert (cls_pred == labels).float().mean() >= 0.9  # the class head follows the labels
