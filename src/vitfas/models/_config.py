"""What every model's frozen config dataclass shares: pairs, and JSON-safe (de)serialisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigDict")


def to_pair(v: int | Sequence[int]) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(224, 320) -> (224, 320)``; anything else is a ValueError."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair (H, W), got {v!r}")
    return t  # type: ignore[return-value]


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
