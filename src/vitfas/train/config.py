"""YAML files -> nested frozen dataclasses, with ``key.sub=value`` command-line overrides.

A run's configuration is a tree of frozen dataclasses (one per YAML section). Loading is
strict: an unknown key anywhere is a :class:`~vitfas.errors.BadConfigError` that names the
key's full path and lists the valid keys at that level; a value of the wrong type names the
key, the expected type and what was found. Fields typed ``dict`` are free-form (their
sub-keys are not checked), which is how model-config overrides are passed through.

>>> from dataclasses import dataclass, field
>>> @dataclass(frozen=True)
... class Optim:
...     lr: float = 1e-3
>>> @dataclass(frozen=True)
... class Run:
...     epochs: int = 1
...     optim: Optim = field(default_factory=Optim)
>>> load_config(Run, None, ["optim.lr=0.01", "epochs=3"])
Run(epochs=3, optim=Optim(lr=0.01))
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from vitfas.errors import BadConfigError

T = TypeVar("T")

__all__ = ["apply_overrides", "from_dict", "load_config", "save_config", "to_dict"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting where it is safe)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except BadConfigError as exc:
                errors.append(str(exc))
        raise BadConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise BadConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise BadConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise BadConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise BadConfigError(
                    f"{where}: expected a list of {len(args)} items, got {len(value)}: {value!r}"
                )
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in
                         enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise BadConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise BadConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BadConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise BadConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise BadConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise BadConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build the dataclass ``cls`` from a (nested) mapping, strictly.

    Raises:
        BadConfigError: unknown key (the valid ones are listed), wrong type, or a value the
            dataclass's own ``__post_init__`` rejects.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        at = f" in section {where!r}" if where else ""
        raise BadConfigError(
            f"unknown config key(s) {[_join(where, k) for k in unknown]}{at}; "
            f"valid keys: {sorted(fields)}"
        )
    kwargs = {k: _coerce(v, hints[k], _join(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BadConfigError):
            raise
        raise BadConfigError(f"{where or cls.__name__}: {exc}") from exc


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def to_dict(obj: Any) -> Any:
    """A dataclass tree -> plain dicts/lists (YAML/JSON safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(
    cls: type, data: Mapping[str, Any], overrides: Sequence[str]
) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to the nested mapping ``data`` (a copy is returned).

    Values are parsed as YAML (``true``, ``3``, ``[1, 2]``, ``null``). Keys are checked
    against ``cls``'s fields level by level; inside a ``dict``-typed field any sub-key goes.
    """
    out = _deepcopy(dict(data))
    for item in overrides:
        if "=" not in item:
            raise BadConfigError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: dict[str, Any] = out
        tp: Any = cls
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if tp is not None and dataclasses.is_dataclass(tp):
                names = [f.name for f in dataclasses.fields(tp) if f.init]
                if part not in names:
                    where = ".".join(parts[:depth]) or "top level"
                    raise BadConfigError(
                        f"override {item!r}: unknown key {'.'.join(parts[: depth + 1])!r}; "
                        f"valid keys at {where}: {sorted(names)}"
                    )
                sub_tp = typing.get_type_hints(tp)[part]
                # Optional[Section] -> Section
                if typing.get_origin(sub_tp) in (Union, types.UnionType):
                    dcs = [a for a in typing.get_args(sub_tp) if dataclasses.is_dataclass(a)]
                    sub_tp = dcs[0] if dcs else sub_tp
            else:
                sub_tp = None  # free-form dict
            if last:
                node[part] = _parse_value(text)
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
                tp = sub_tp
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(
    cls: type[T],
    path: str | Path | None,
    overrides: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> T:
    """Read a YAML file (or take ``data``), apply overrides, and build ``cls`` strictly.

    Args:
        cls: the top-level config dataclass.
        path: a YAML file (relative to the current folder) or the name of a shipped
            config (:mod:`vitfas.configs`), or ``None`` to start from ``data``.
        overrides: ``key.sub=value`` strings, applied in order after the file.
        data: a mapping used instead of a file.

    Raises:
        BadConfigError: unreadable file, invalid YAML, unknown key or bad value; the message
            names the file and the key.
    """
    raw: Any = dict(data or {})
    where = None
    if path is not None:
        from vitfas.configs import resolve_config

        file, text = resolve_config(path)
        where = str(file) if file is not None else f"shipped config {path!r}"
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise BadConfigError(f"{where}: invalid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise BadConfigError(f"{where}: expected a mapping at the top level, got {type(raw)}")
    try:
        raw = apply_overrides(cls, raw, overrides)
    except BadConfigError as exc:
        raise BadConfigError(f"command line: {exc}") from exc
    try:
        return from_dict(cls, raw)
    except BadConfigError as exc:
        blamed = _blamed_override(str(exc), overrides)
        if blamed is not None:
            raise BadConfigError(f"command-line override {blamed!r}: {exc}") from exc
        if where is not None:
            raise BadConfigError(f"{where}: {exc}") from exc
        raise


def _blamed_override(message: str, overrides: Sequence[str]) -> str | None:
    """The override whose key (or a key under it) the error ``message`` is about, if any."""
    for item in reversed(overrides):
        key = item.split("=", 1)[0].strip()
        if key and re.search(rf"(^|[\s'\[]){re.escape(key)}([\s:'.\]]|$)", message):
            return item
    return None


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a config dataclass tree as YAML (the resolved config saved beside a run)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p
