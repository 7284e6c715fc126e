"""Multi-GPU / multi-node support on ``torch.distributed``: process group, wrapping, sharding.

Launch any vitfas verb under ``torchrun`` and the pieces here take over:

- :func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and starts the process group (NCCL on
  GPU, Gloo on CPU), pinning each process to GPU ``LOCAL_RANK``. Without those variables
  (or with ``WORLD_SIZE=1``) it does nothing and reports rank 0 of 1.
- :func:`shard_indices` / :func:`distributed_map` split work over ranks by contiguous
  index ranges, run it, and gather the results in the original order on every rank:
  no sample is dropped or duplicated, whatever the size (unlike ``DistributedSampler``,
  which pads). Used by ``vitfas eval`` and ``vitfas data prepare``.
- Small collectives that are no-ops in a single process: :func:`barrier`,
  :func:`broadcast_object`, :func:`all_gather_objects`, :func:`all_reduce_mean`.
- Failure handling: every collective gives up after ``trainer.dist_timeout_s`` (eval and
  prepare: ``VITFAS_DIST_TIMEOUT``; default 1800 s); a rank that fails reports itself
  (:func:`fail_fast`: "rank R of W failed: ...") and exits at once, so torchrun stops the
  other ranks within seconds instead of leaving them waiting in a collective.

This is the process-group layer: it knows nothing of models or training, so ``data``,
``metrics`` and ``train`` can all use it. Wrapping a model for data-parallel training
(DDP / FSDP) and unsharded state dicts live in :mod:`vitfas.train.distributed`.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from vitfas.errors import BadConfigError, VitfasError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "distributed_map",
    "env_world_size",
    "fail_fast",
    "gather_concat",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "shard_indices",
    "teardown",
]

_STARTED_HERE = False
_TIMEOUT_S: float | None = None


def _timeout_s(timeout_s: float | None) -> float:
    raw: Any = timeout_s if timeout_s is not None else os.environ.get("VITFAS_DIST_TIMEOUT",
                                                                      1800)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadConfigError(f"distributed timeout: expected seconds, got {raw!r} "
                             f"(trainer.dist_timeout_s / VITFAS_DIST_TIMEOUT)") from None
    if not 0 < value < float("inf"):
        raise BadConfigError(f"distributed timeout must be a positive finite number of "
                             f"seconds, got {raw!r} (trainer.dist_timeout_s / "
                             f"VITFAS_DIST_TIMEOUT)")
    return value


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node,
    the ``backend`` (``None`` for a single process) and the ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise BadConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") \
            from exc


def is_distributed() -> bool:
    """A process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _device_for(device: str, local_rank: int, distributed: bool) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadConfigError(f"device {device!r} requested but CUDA is not available")
        if distributed and dev.index is None:
            if local_rank >= torch.cuda.device_count():
                raise BadConfigError(
                    f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} "
                    "GPU(s); start at most that many processes per node (--nproc_per_node)"
                )
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto", backend: str | None = None,
                     timeout_s: float | None = None) -> DistInfo:
    """Start (or join) the process group described by torchrun's environment variables.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; with several processes, ``cuda``
            / ``auto`` mean GPU ``LOCAL_RANK``.
        backend: ``nccl`` / ``gloo``; default NCCL for CUDA, Gloo for CPU.
        timeout_s: collective timeout (``trainer.dist_timeout_s``); default
            ``VITFAS_DIST_TIMEOUT`` or 1800 s (long enough for an evaluation pass that only
            some ranks run). A rank waiting longer than this in a collective raises.

    Returns:
        The :class:`DistInfo`; rank 0 of 1 on CPU/CUDA when not launched by torchrun.
    """
    global _STARTED_HERE
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        dev = _device_for(device, local, dist.get_world_size() > 1)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), dev)
    world = env_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0, None, _device_for(device, 0, False))
    if not dist.is_available():
        raise BadConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise BadConfigError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
            "(e.g. torchrun --nproc_per_node=4 -m vitfas train config.yaml)"
        )
    dev = _device_for(device, local, True)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    timeout = _timeout_s(timeout_s)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kwargs: dict[str, Any] = {"backend": backend,
                              "timeout": datetime.timedelta(seconds=timeout)}
    if dev.type == "cuda" and backend == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    global _TIMEOUT_S
    _STARTED_HERE, _TIMEOUT_S = True, timeout
    atexit.register(teardown)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local, backend, dev)
    log.info("distributed: rank %d of %d (local rank %d) on %s, backend %s", info.rank,
             info.world_size, local, dev, backend)
    return info


def teardown() -> None:
    """Destroy the process group if :func:`init_distributed` started it.

    Every rank first meets the others (bounded to 60 s with gloo's monitored barrier), so
    that no rank tears its connections down while a peer still uses them: gloo's transport
    threads abort the process ("terminate called without an active exception") when a
    peer vanishes under them at interpreter exit.
    """
    global _STARTED_HERE
    if _STARTED_HERE and dist.is_available() and dist.is_initialized():
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
            else:
                dist.barrier()
        except Exception as exc:  # a peer already gone: still release our side
            log.warning("distributed teardown: ranks did not meet (%s)", exc)
        dist.destroy_process_group()
    _STARTED_HERE = False


def fail_fast(exc: BaseException, what: str = "vitfas") -> None:
    """In a multi-process run: report that this rank failed (naming it, with ``exc``) and
    leave the process at once with exit status 1, without the teardown barrier.

    torchrun then stops the other ranks within seconds (they may be waiting in a collective
    that this rank will never join); without torchrun, their next collective fails as the
    connection closes. Returns (does nothing) in a single process.
    """
    if not is_distributed():
        return
    import sys
    import traceback

    rank, world = dist.get_rank(), dist.get_world_size()
    text = str(exc) or type(exc).__name__
    if _is_collective_failure(exc):
        text = (f"a collective operation failed or timed out (trainer.dist_timeout_s = "
                f"{_TIMEOUT_S:g} s): another rank has probably failed first, see its "
                f"message ({type(exc).__name__}: {text.splitlines()[0] if text else ''})")
    elif not isinstance(exc, VitfasError):
        traceback.print_exception(exc, file=sys.stderr)
    print(f"{what}: rank {rank} of {world} failed: {text}; stopping this run on every "
          f"rank", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def _is_collective_failure(exc: BaseException) -> bool:
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in msg for k in ("Timed out", "timed out", "Connection closed by peer",
                           "Connection reset by peer", "[gloo/", "NCCL"))


# --------------------------------------------------------------------------- collectives
def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as held by rank ``src``, on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``t`` over ranks (a new tensor; ``t`` itself is untouched)."""
    t = t.detach().clone()
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def gather_concat(local: Any) -> Any:
    """Concatenate every rank's ``local`` (a tensor, or a tuple/list of tensors, first
    dimension = samples) along dim 0 in rank order, on every rank (CPU tensors).

    With :func:`shard_indices` shares this rebuilds the single-process result exactly.
    """
    def cpu(x: Any) -> Any:
        return x.detach().cpu() if isinstance(x, torch.Tensor) else type(x)(cpu(v) for v in x)

    local = cpu(local)
    if not is_distributed():
        return local
    parts = all_gather_objects(local)
    if isinstance(local, torch.Tensor):
        return torch.cat(parts)
    return type(local)(torch.cat([p[i] for p in parts]) for i in range(len(local)))


# --------------------------------------------------------------------------- sharding
def shard_indices(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """This rank's contiguous share of ``range(n)``.

    The first ``n % world_size`` ranks get one item more; shares are disjoint, in rank
    order, and cover ``range(n)`` exactly (no padding, no duplicates).
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def distributed_map(fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T], *,
                    rank: int | None = None, world_size: int | None = None) -> list[R]:
    """Apply a batched ``fn`` to this rank's share of ``items``; every rank gets all results.

    ``fn(chunk) -> results`` must return one result per item of ``chunk`` (in order; it
    may batch, show progress, skip-and-report internally). The results of all ranks are
    gathered (``all_gather_object``) and concatenated in rank order, so ``out[i]`` is the
    result for ``items[i]``, exactly as ``fn(items)`` would give in one process.

    Raises:
        RuntimeError: ``fn`` returned a different number of results than items.
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    share = shard_indices(len(items), rank, world_size)
    local = list(fn([items[i] for i in share]))
    if len(local) != len(share):
        raise RuntimeError(f"distributed_map: fn returned {len(local)} results for "
                           f"{len(share)} items on rank {rank}")
    if world_size == 1:
        return local
    parts = all_gather_objects((share.start, local))
    out: list[R] = []
    for start, part in sorted(parts, key=lambda p: p[0]):
        if start != len(out):
            raise RuntimeError(f"distributed_map: rank shares do not line up at item {start}")
        out.extend(part)
    if len(out) != len(items):
        raise RuntimeError(f"distributed_map: gathered {len(out)} results for {len(items)} "
                           "items (were all ranks given the same items?)")
    return out
