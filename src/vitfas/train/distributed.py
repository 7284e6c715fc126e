"""Data-parallel training on ``torch.distributed``: wrapping a model, gradient sync, state dicts.

- :func:`wrap_model` wraps a model for data parallelism: ``DistributedDataParallel``
  (``trainer.strategy: ddp``) or FSDP2 ``fully_shard`` per transformer block
  (``trainer.strategy: fsdp``; parameters, gradients and optimiser state sharded).
- :func:`no_sync` skips gradient synchronisation on accumulation micro-steps.
- :func:`full_state_dicts` / :func:`load_full_state_dicts`: unsharded model and optimiser
  state, the same for any world size.

The process group, sharding of work and the small collectives live one layer down, in
:mod:`vitfas.distributed` (``data`` and ``metrics`` use them too); they are re-exported
here so ``from vitfas.train.distributed import init_distributed`` keeps working. The
training engine (:mod:`vitfas.train.engine`) calls all of these itself; a verb needs
nothing more than to build its :class:`~vitfas.train.engine.Engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vitfas.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    distributed_map,
    env_world_size,
    gather_concat,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    shard_indices,
    teardown,
)
from vitfas.errors import BadConfigError

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "distributed_map",
    "env_world_size",
    "full_state_dicts",
    "gather_concat",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_fsdp",
    "load_full_state_dicts",
    "no_sync",
    "shard_indices",
    "teardown",
    "unwrap",
    "wrap_model",
]


# --------------------------------------------------------------------------- wrapping
def _fully_shard() -> Callable[..., Any]:
    try:  # torch >= 2.6
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # torch 2.4 / 2.5
        from torch.distributed._composable.fsdp import fully_shard  # type: ignore[no-redef]
    return fully_shard


def _shard_units(model: nn.Module) -> list[nn.Module]:
    """The sub-modules FSDP shards separately: every transformer block, i.e. each element
    of a ``blocks`` / ``decoder_blocks`` list anywhere in the model (ViT, DeiT, the MAE
    encoder and decoder, the stages of Swin)."""
    units: list[nn.Module] = []
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1] in ("blocks", "decoder_blocks") and \
                isinstance(mod, nn.ModuleList | nn.Sequential):
            units += list(mod)
    return units


def is_fsdp(model: nn.Module) -> bool:
    """``model`` was sharded by FSDP2 ``fully_shard``."""
    return type(model).__name__.startswith("FSDP") and hasattr(model, "reshard")


def wrap_model(model: nn.Module, strategy: str, device: torch.device,
               find_unused_parameters: bool = False) -> nn.Module:
    """Wrap ``model`` (already on ``device``) for data-parallel training over the group.

    ``ddp``: ``DistributedDataParallel`` (weights broadcast from rank 0, gradients
    all-reduced and averaged). ``fsdp``: FSDP2 ``fully_shard`` on each transformer block
    and on the root (in place; every rank must have identical initial weights, which the
    engine's seeding guarantees). Returns the model unchanged in a single process.
    """
    if strategy not in ("ddp", "fsdp"):
        raise BadConfigError(f"trainer.strategy must be 'ddp' or 'fsdp', got {strategy!r}")
    if not is_distributed():
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids,
                                       find_unused_parameters=find_unused_parameters)
    fully_shard = _fully_shard()
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    with torch.no_grad():  # identical starting weights on every rank, whatever the seeding
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)
    for unit in _shard_units(model):
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) \
        else model


def no_sync(model: nn.Module, skip: bool) -> Any:
    """Context for a micro-step: with ``skip``, gradients are not synchronised (DDP
    ``no_sync``, FSDP2 ``set_requires_gradient_sync(False)``); they accumulate locally until
    the last micro-step of an optimiser step, which synchronises them all at once."""
    if not skip:
        return nullcontext()
    if hasattr(model, "no_sync") and isinstance(getattr(model, "module", None), nn.Module):
        return model.no_sync()
    if is_fsdp(model):
        return _fsdp_no_sync(model)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


# --------------------------------------------------------------------------- state dicts
def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                     inner: nn.Module) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Unsharded ``(model, optimizer)`` state dicts, the same for any world size (the
    optimiser's is ``None`` when ``optimizer`` is).

    Collective under FSDP (every rank must call it; only rank 0 gets the full tensors, on
    CPU); plain ``state_dict()`` calls otherwise.
    """
    if not is_fsdp(model):
        return inner.state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if optimizer is None:
        return get_model_state_dict(model, options=opts), None
    msd, osd = get_state_dict(model, optimizer, options=opts)
    return msd, osd


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, inner: nn.Module,
                          model_sd: dict[str, Any], optim_sd: dict[str, Any]) -> None:
    """Inverse of :func:`full_state_dicts` (every rank passes the full dicts it read)."""
    if not is_fsdp(model):
        inner.load_state_dict(model_sd)
        optimizer.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd,
                   options=StateDictOptions(full_state_dict=True))
