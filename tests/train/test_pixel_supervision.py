"""Deep pixel-wise supervision (``loss.pixel_weight``): the per-patch loss by hand, the total
loss, the hook through a wrapper, clear errors, and a CLI run that records it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitfas.errors import BadConfigError
from vitfas.models import create_model
from vitfas.train.classify import ClassificationTask


def _vit(**kw: object) -> nn.Module:
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=16, depth=1,
                     num_heads=2, num_classes=2, drop_path_rate=0.0, **kw)
    with torch.no_grad():
        m.head.weight.normal_(0, 0.5)
    return m.train()


def test_patch_loss_equals_hand_computation() -> None:
    m = _vit(reg_tokens=1)  # two prefix tokens to skip
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 1])
    task = ClassificationTask(2, 1, pixel_weight=0.5)
    tokens = m.forward_features(x)
    assert tokens.shape == (3, 2 + 16, 16)
    by_hand = torch.stack([
        F.cross_entropy(m.head(tokens[b, 2 + i])[None], y[b:b + 1])
        for b in range(3) for i in range(16)
    ]).mean()
    torch.testing.assert_close(task.patch_loss(m, tokens, y), by_hand, atol=1e-6, rtol=1e-6)


class _Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model lives in ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_training_step_adds_the_weighted_patch_term_and_trains_patches() -> None:
    m = _vit()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    plain, logs0 = ClassificationTask(2, 1).training_step(m, (x, y))
    assert "loss_pixel" not in logs0
    task = ClassificationTask(2, 1, pixel_weight=0.25)
    loss, logs = task.training_step(_Wrapper(m), (x, y))
    expect = task.patch_loss(m, m.forward_features(x), y)
    assert logs["loss_pixel"] == pytest.approx(float(expect.detach()), rel=1e-5)
    torch.testing.assert_close(loss, plain + 0.25 * expect, atol=1e-5, rtol=1e-5)
    # the hook is gone after the step
    assert not m.norm._forward_hooks
    # the patch term reaches the patch embedding through the patch tokens' own path
    m.zero_grad()
    (loss - plain).backward()
    assert m.patch_embed.proj.weight.grad.abs().sum() > 0


def test_errors() -> None:
    with pytest.raises(BadConfigError, match="pixel_weight must be >= 0"):
        ClassificationTask(2, 1, pixel_weight=-1.0)

    class NoTokens(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean((2, 3))[:, :2]

    task = ClassificationTask(2, 1, pixel_weight=1.0)
    with pytest.raises(BadConfigError, match=r"ViT-family model .* NoTokens has no \['norm'"):
        task.training_step(NoTokens(), (torch.randn(2, 3, 4, 4), torch.tensor([0, 1])))


@pytest.mark.timeout(300)
def test_cli_run_records_pixel_weight(tmp_path) -> None:
    import json

    import yaml

    from vitfas import cli
    from vitfas.train.synthetic import write_imagefolder

    data = write_imagefolder(tmp_path / "data", n_train=32, n_dev=16, n_test=16, size=16,
                             artifact="halftone", seed=0)
    cfg = {"out": str(tmp_path / "run"),
           "model": {"name": "vit_cdcstem_w128_p8_64",
                     "overrides": {"embed_dim": 16, "depth": 1, "num_heads": 2,
                                   "stem_channels": [8, 8], "patch_size": 4}},
           "data": {"format": "imagefolder", "path": str(data), "img_size": 16},
           "loss": {"pixel_weight": 0.5},
           "trainer": {"epochs": 1, "batch_size": 8}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert cli.main(["-q", "train", str(p)]) == 0
    bundle = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())
    assert bundle["training"]["loss"]["pixel_weight"] == 0.5
    assert bundle["architecture"]["config"]["stem"] == "cdc"
    with open(tmp_path / "run" / "train_log.csv") as f:
        assert "loss_pixel" in f.readline()
