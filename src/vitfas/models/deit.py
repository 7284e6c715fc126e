"""DeiT: data-efficient image transformers with a distillation token (Touvron et al., 2021).

A DeiT without distillation is exactly a ViT (``deit_*_patch16_224`` are plain
:class:`~vitfas.models.vit.VisionTransformer` configs). The distilled form adds a second
learnable token after the class token and a second linear head, ``head_dist``, that reads it:

- ``model.train()``: ``forward`` returns ``(logits_cls, logits_dist)``, two ``[B, classes]``
  tensors, for :class:`vitfas.train.distill.DistillationLoss` (class head against the
  labels, distillation head against the teacher). ``set_distilled_training(False)`` makes
  training mode return the mean instead, for fine-tuning without a teacher.
- ``model.eval()``: ``forward`` returns the mean of the two heads' logits, ``[B, classes]``.

Parameter names are timm's (``cls_token``, ``dist_token``, ``pos_embed``, ``head``,
``head_dist``), so a timm ``deit_*_distilled_patch16_224`` state dict loads as it is.
``model.num_prefix_tokens`` is 2 (class + distillation token) for explainability code that
strips prefix tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from vitfas.models.registry import register_model
from vitfas.models.vit import VisionTransformer, ViTConfig, vit_config


@dataclass(frozen=True)
class DeiTConfig(ViTConfig):
    """A :class:`ViTConfig` plus ``distilled`` (a distillation token and head).

    Attributes:
        distilled: add the distillation token and ``head_dist``. Needs ``class_token=True``,
            ``global_pool="token"`` and no register tokens (the heads read tokens 0 and 1).
    """

    distilled: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distilled:
            if not self.class_token or self.global_pool != "token":
                raise ValueError(
                    "DeiTConfig: a distilled model needs class_token=True and "
                    f"global_pool='token' (got class_token={self.class_token}, "
                    f"global_pool={self.global_pool!r}); the heads read the class and "
                    "distillation tokens"
                )
            if self.reg_tokens:
                raise ValueError(
                    f"DeiTConfig: register tokens are not supported with distillation "
                    f"(got reg_tokens={self.reg_tokens})"
                )

    @property
    def num_prefix_tokens(self) -> int:
        """Class token + distillation token (+ register tokens when not distilled)."""
        return int(self.class_token) + int(self.distilled) + self.reg_tokens


def deit_config(variant: str, distilled: bool = True, **overrides: object) -> DeiTConfig:
    """A :class:`DeiTConfig` from a variant string such as ``"Ti/16"`` (see ``vit_config``)."""
    base = vit_config(variant, **overrides)
    return DeiTConfig(**dataclasses.asdict(base), distilled=distilled)


class DistilledVisionTransformer(VisionTransformer):
    """ViT with a distillation token and head (DeiT).

    Shapes (B batch, D width, N = 2 + h*w tokens):
        ``forward``: ``[B, C, H, W]`` -> ``[B, classes]`` in eval (mean of both heads);
        ``([B, classes], [B, classes])`` (class head, distillation head) in training.
        ``forward_features``: ``[B, C, H, W] -> [B, N, D]``; token 0 is the class token,
        token 1 the distillation token.
        ``forward_head``: ``[B, N, D]`` -> as ``forward``; with ``pre_logits`` the mean of
        the two tokens ``[B, D]``.
    """

    def __init__(self, config: DeiTConfig) -> None:
        if not isinstance(config, DeiTConfig):
            raise TypeError(f"DistilledVisionTransformer needs a DeiTConfig, got {type(config)}")
        if not config.distilled:
            raise ValueError("DistilledVisionTransformer needs distilled=True; a DeiT without "
                             "distillation is a VisionTransformer")
        super().__init__(config)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.head_dist = (
            nn.Linear(config.embed_dim, config.num_classes) if config.num_classes else nn.Identity()
        )
        self.distilled_training = True
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        if isinstance(self.head_dist, nn.Linear):
            nn.init.trunc_normal_(self.head_dist.weight, std=0.02)
            nn.init.zeros_(self.head_dist.bias)

    def set_distilled_training(self, enable: bool = True) -> None:
        """Whether training mode returns both heads' logits (default) or their mean."""
        self.distilled_training = enable

    def reset_classifier(self, num_classes: int) -> None:
        """Replace both heads with freshly initialised ones of ``num_classes`` outputs."""
        super().reset_classifier(num_classes)
        if num_classes:
            self.head_dist = nn.Linear(self.embed_dim, num_classes, device=self.dist_token.device)
            nn.init.trunc_normal_(self.head_dist.weight, std=0.02)
            nn.init.zeros_(self.head_dist.bias)
            self.head = self.head.to(self.dist_token.device)
        else:
            self.head_dist = nn.Identity()
        self.head.train(self.training)
        self.head_dist.train(self.training)

    def no_weight_decay(self) -> set[str]:
        """Parameter names conventionally excluded from weight decay."""
        return super().no_weight_decay() | {"dist_token"}

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        """Class token, distillation token, then any registers: each ``[B, n, D]``."""
        tokens = [t for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None]
        return [t.expand(batch, -1, -1) for t in tokens]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, D]``: the mean of the class and distillation tokens."""
        return (x[:, 0] + x[:, 1]) / 2

    def forward_head(
        self, x: torch.Tensor, pre_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``[B, N, D]`` -> logits (see the class docstring for train vs eval)."""
        x_cls, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
        if pre_logits:
            return (x_cls + x_dist) / 2
        logits, logits_dist = self.head(x_cls), self.head_dist(x_dist)
        if self.training and self.distilled_training and not torch.jit.is_scripting():
            return logits, logits_dist
        return (logits + logits_dist) / 2


def _register_deits() -> None:
    for size, variant in (("tiny", "Ti/16"), ("small", "S/16"), ("base", "B/16")):
        register_model(
            f"deit_{size}_patch16_224",
            vit_config(variant, img_size=224),
            hub_id=f"timm/deit_{size}_patch16_224.fb_in1k",
        )
        register_model(
            f"deit_{size}_distilled_patch16_224",
            deit_config(variant, img_size=224),
            builder=DistilledVisionTransformer,
            hub_id=f"timm/deit_{size}_distilled_patch16_224.fb_in1k",
        )


_register_deits()
