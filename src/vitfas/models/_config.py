"""What every model family shares: pairs, the input check, and JSON-safe config dicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

C = TypeVar("C", bound="ConfigDict")


def to_pair(v: int | Sequence[int]) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(224, 320) -> (224, 320)``; anything else is a ValueError."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair (H, W), got {v!r}")
    return t  # type: ignore[return-value]


def check_image_batch(
    x: object,
    in_chans: int,
    img_size: tuple[int, int] | None,
    size_hint: str = "",
) -> None:
    """Raise a ``ValueError`` naming the expected and the actual input unless ``x`` is a
    floating-point ``[B, in_chans, H, W]`` tensor (of size ``img_size`` when one is given).

    ``size_hint`` follows the size message (e.g. what else the user could do).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor [B, {in_chans}, H, W], got {type(x)}")
    if x.ndim != 4:
        raise ValueError(
            f"expected a 4-D image batch [B, {in_chans}, H, W], got a {x.ndim}-D tensor "
            f"of shape {list(x.shape)}"
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} input channels, got {x.shape[1]} (input shape {list(x.shape)})"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected a floating-point image tensor, got dtype {x.dtype}; convert with "
            ".float() and normalise first"
        )
    if img_size is not None and tuple(x.shape[-2:]) != tuple(img_size):
        raise ValueError(
            f"expected input size {img_size[0]}x{img_size[1]}, got {x.shape[-2]}x{x.shape[-1]}"
            f"; resize, or build the model with img_size={tuple(x.shape[-2:])}{size_hint}"
        )


class ConfigDict:
    """Mixin for frozen config dataclasses: ``to_dict()`` and ``from_dict()``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error that lists the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(valid)}"
            )
        return cls(**d)


def input_norm_check(cfg: Any) -> tuple[bool, str]:
    """For configs of models that undo the input normalisation in the model: make
    ``cfg.input_mean`` / ``cfg.input_std`` float tuples (on a frozen dataclass) and return
    the check ``(ok, message)`` that they are 3 values each with ``std > 0``."""
    mean = tuple(float(v) for v in cfg.input_mean)
    std = tuple(float(v) for v in cfg.input_std)
    object.__setattr__(cfg, "input_mean", mean)
    object.__setattr__(cfg, "input_std", std)
    return (len(mean) == 3 and len(std) == 3 and all(v > 0 for v in std),
            f"input_mean/input_std must be 3 values each (std > 0), got {list(mean)}, "
            f"{list(std)}")
