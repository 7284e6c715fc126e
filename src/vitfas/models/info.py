"""``vitfas info MODEL``: shapes, parameters, FLOPs and activation memory of a model;
``vitfas info --list [GLOB]``: the registered names, parameter counts and public weights.

Shapes and FLOPs are measured on PyTorch's ``meta`` device, so they are instant for any
size (ViT-H included):

- stage shapes come from forward hooks on a real forward pass;
- FLOPs from :class:`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add, every
  matmul counted, including the two attention matmuls inside fused attention);
- activation memory is the total size of the distinct tensors autograd saves for the
  backward pass of one training-mode forward (parameters excluded), measured at batch 1
  on the CPU with uninitialised weights and scaled by the batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModelInfo:
    """What ``vitfas info`` reports. Shapes are lists of ints with ``B`` as the batch."""

    name: str
    input_shape: list[int]
    output_shape: list[int]
    stages: list[tuple[str, list[int]]] = field(default_factory=list)
    params: int = 0
    trainable_params: int = 0
    gflops: float = 0.0  # forward, per image
    batch_size: int = 1
    activation_mib: float = 0.0  # saved for backward, for the whole batch
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["stages"] = [{"stage": s, "shape": shape} for s, shape in self.stages]
        return d


def _stage_hooks(model: nn.Module, record: list[tuple[str, list[int]]]) -> list[Any]:
    """Hooks recording the ViT's stages; generic models get their output shape only."""
    handles = []

    def hook(label: str, take: Any = lambda o: o) -> Any:
        def fn(_m: nn.Module, _inp: Any, out: Any) -> None:
            t = take(out)
            record.append((label, list(t.shape)))

        return fn

    pe = getattr(model, "patch_embed", None)
    stem = getattr(pe, "convs", None)  # a convolutional stem: one row per convolution
    if isinstance(stem, nn.ModuleList):
        for i, layer in enumerate(stem):
            handles.append(layer.register_forward_hook(hook(f"stem conv {i}")))
    if pe is not None:
        handles.append(pe.register_forward_hook(
            hook("patch embedding", lambda o: o.flatten(1, 2) if o.ndim == 4 else o)))
    drop = getattr(model, "pos_drop", None)
    if drop is not None:
        handles.append(drop.register_forward_hook(hook("+ prefix tokens + position")))
    layers = getattr(model, "layers", None)  # hierarchical models (Swin): one row per stage
    if isinstance(layers, nn.ModuleList):
        for i, stage in enumerate(layers):
            handles.append(stage.register_forward_hook(
                hook(f"stage {i}", lambda o: (o[0] if isinstance(o, tuple) else o).flatten(1, 2))))
    blocks = getattr(model, "blocks", None)
    if blocks is not None:
        for i, blk in enumerate(blocks):
            handles.append(blk.register_forward_hook(hook(f"block {i}", lambda o: o[0])))
    norm = getattr(model, "norm", None)
    if isinstance(norm, nn.Module):
        handles.append(norm.register_forward_hook(hook("final norm")))
    fc_norm = getattr(model, "fc_norm", None)
    if isinstance(fc_norm, nn.Module):
        handles.append(fc_norm.register_forward_hook(hook("pooled")))
    return handles


def model_info(
    name: str,
    img_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    batch_size: int = 1,
) -> ModelInfo:
    """Measure a registered model on the meta device.

    Args:
        name: registry name (see :func:`vitfas.list_models`).
        img_size: input ``(H, W)``; the model's default when omitted.
        num_classes: head size; the model's default when omitted.
        batch_size: batch for the activation-memory figure.
    """
    from vitfas.models.registry import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, img_size=img_size)
    cfg = model.config
    h, w = cfg.img_size
    x1 = torch.empty(1, cfg.in_chans, h, w, device="meta")
    info = ModelInfo(
        name=name,
        input_shape=[batch_size, cfg.in_chans, h, w],
        output_shape=[],
        params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        batch_size=batch_size,
        config=cfg.to_dict() if hasattr(cfg, "to_dict") else {},
    )
    model.eval()
    stages: list[tuple[str, list[int]]] = []
    handles = _stage_hooks(model, stages)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(x1)
    for hd in handles:
        hd.remove()
    info.gflops = counter.get_total_flops() / 1e9
    if not isinstance(out, torch.Tensor):  # e.g. MAE: a dataclass with the reconstruction
        out = out.pred
        stages.append(("reconstruction (patches)", list(out.shape)))
    else:
        label = "logits" if getattr(model, "num_classes", 0) else "output"
        stages.append((label, list(out.shape)))
    info.stages = [(s, [batch_size, *shape[1:]]) for s, shape in _collapse_blocks(stages)]
    info.output_shape = [batch_size, *list(out.shape)[1:]]
    info.activation_mib = activation_bytes(model, batch_size) / 2**20
    return info


def _collapse_blocks(stages: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
    """Show ``blocks 0-11`` once when every block keeps the same shape."""
    blocks = [(s, sh) for s, sh in stages if s.startswith("block ")]
    if len(blocks) > 1 and all(sh == blocks[0][1] for _, sh in blocks):
        first = stages.index(blocks[0])
        rest = [st for st in stages if not st[0].startswith("block ")]
        rest.insert(first, (f"blocks 0-{len(blocks) - 1}", blocks[0][1]))
        return rest
    return stages


def activation_bytes(model: nn.Module, batch_size: int) -> int:
    """Bytes of the distinct tensors autograd saves in one training forward.

    Measured at batch 1 on the CPU with uninitialised weights (``to_empty``: no init cost,
    values are irrelevant to sizes) and scaled by ``batch_size``: every saved activation has
    the batch as a factor of its size. Distinct storages are counted once; parameters (also
    saved by matmuls for their backward) are not counted.
    """
    cfg = model.config
    cpu_model = model.to_empty(device="cpu") if _on_meta(model) else model
    for m in cpu_model.modules():  # index buffers and masks are garbage after to_empty()
        if hasattr(m, "init_non_persistent_buffers"):
            m.init_non_persistent_buffers()
    param_ptrs = {p.untyped_storage().data_ptr() for p in cpu_model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs:
            storages[s.data_ptr()] = s.nbytes()
        return t

    was_training = cpu_model.training
    cpu_model.train()
    x = torch.zeros(1, cfg.in_chans, *cfg.img_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cpu_model(x)
    cpu_model.train(was_training)
    return sum(storages.values()) * batch_size


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def format_info(info: ModelInfo) -> str:
    """The human-readable table ``vitfas info`` prints."""
    lines = [
        f"model            {info.name}",
        f"input            {info.input_shape}",
        f"output           {info.output_shape}",
        "stages:",
    ]
    width = max(len(s) for s, _ in info.stages)
    lines += [f"  {s:<{width}}  {shape}" for s, shape in info.stages]
    lines += [
        f"parameters       {_fmt_int(info.params)} ({info.params / 1e6:.2f} M)",
        f"forward GFLOPs   {info.gflops:.1f} per image (2 FLOPs per multiply-add, "
        f"attention matmuls included)",
        f"activations      {info.activation_mib:,.1f} MiB saved for backward at batch "
        f"{info.batch_size} (fp32, training mode)",
    ]
    return "\n".join(lines)


def list_table(pattern: str = "*") -> list[dict[str, Any]]:
    """One row per registered name matching ``pattern``: ``name``, ``family`` (config
    class), ``params`` (counted on the meta device, default head) and ``weights`` (the public
    checkpoint ``create_model(name, pretrained=True)`` loads, or ``None``)."""
    from vitfas.models.registry import create_model, get_entry, list_models

    rows = []
    for name in list_models(pattern):
        entry = get_entry(name)
        with torch.device("meta"):
            model = create_model(name)
        rows.append({
            "name": name,
            "family": type(entry.config).__name__.removesuffix("Config"),
            "params": sum(p.numel() for p in model.parameters()),
            "weights": entry.hub_id,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The listing ``vitfas info --list`` prints: name, parameters, public weights."""
    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{'model':<{width}}  {'params':>9}  public weights"]
    lines += [f"{r['name']:<{width}}  {r['params'] / 1e6:>8.2f}M  {r['weights'] or '-'}"
              for r in rows]
    with_weights = sum(r["weights"] is not None for r in rows)
    lines.append(f"{len(rows)} models, {with_weights} with public weights "
                 f"(create_model(name, pretrained=True) or model.pretrained: true)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list is not None:
        rows = list_table(args.list)
        if not rows:
            print(f"vitfas info: no model name matches {args.list!r}", file=sys.stderr)
            return 1
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        return 0
    if args.model is None:
        print("vitfas info: give a model name, or --list [GLOB] to see the names",
              file=sys.stderr)
        return 2
    size = None
    if args.img_size:
        size = (args.img_size[0], args.img_size[-1])
    info = model_info(args.model, size, args.num_classes, args.batch_size)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(format_info(info))
    return 0


def _complete_models(**_: Any) -> list[str]:
    from vitfas.models.registry import list_models

    return list_models()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="list models, or show a model's shapes, size and cost",
        description="Report a model's stage shapes, parameter count, forward GFLOPs and "
        "activation memory, or list the registered models (--list) with their parameter "
        "counts and which have public weights.",
    )
    model = p.add_argument("model", nargs="?", help="registry name, e.g. vit_base_patch16_224")
    model.completer = _complete_models  # type: ignore[attr-defined]
    p.add_argument("--list", nargs="?", const="*", default=None, metavar="GLOB",
                   help="list the registered models matching GLOB (all when omitted), e.g. "
                   "'vit_*patch16*'")
    p.add_argument("--img-size", type=int, nargs="+", metavar="PX",
                   help="input size: one value (square) or H W (default: the model's own)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="head size (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="batch for the activation-memory figure (default 32)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
