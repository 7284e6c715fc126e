"""``vitfas explain``: heatmaps of what a bundle looks at, and position-embedding figures.

::

    vitfas explain BUNDLE PATH... -o DIR [--method rollout|grad-rollout|attention]
                   [--layer L] [--head H] [--head-fusion mean|max|min] [--discard-ratio R]
                   [--query auto|cls|dist|mean|INDEX] [--class NAME|INDEX] [--all-heads]
    vitfas explain MODEL_OR_BUNDLE --pos-embed -o DIR

PATH is an image, a video (``--frames`` frames sampled uniformly, each explained as an image
named ``<stem>.frame<i>``) or a folder walked for both, as ``vitfas predict`` takes them
(:func:`vitfas.data.inputs.expand_inputs`). Faces are numbered from 0, largest first, as in
``vitfas predict`` and the web page. For every face of every image it writes
``<stem>.face<k>.<method>.crop.png`` (the heatmap
over the crop the model saw, at the crop's size) and ``<stem>.face<k>.<method>.image.png``
(the same heatmap drawn back onto the original photo through the crop box, at the photo's
size); ``--all-heads`` adds ``<stem>.face<k>.layers_heads.png``. Unreadable images and
images without a face are skipped, counted and reported; the exit status is 1 when any
image was skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitfas.data.io import load_image
from vitfas.errors import (
    BadCheckpointError,
    BadConfigError,
    BadImageError,
    BadVideoError,
)
from vitfas.explain.explainer import METHODS, explain, layer_head_maps
from vitfas.explain.overlay import (
    Box,
    layer_head_figure,
    overlay_on_crop,
    overlay_on_image,
    save_png,
    to_pixels,
)
from vitfas.explain.posembed import (
    local_structure,
    position_embedding,
    similarity_figure,
    similarity_maps,
)
from vitfas.explain.rollout import HEAD_FUSIONS
from vitfas.metrics.calibration import scaled_softmax

log = logging.getLogger(__name__)



def register(subparsers: Any) -> None:
    """Add the ``explain`` verb."""
    p = subparsers.add_parser(
        "explain",
        help="attention maps, attention rollout and position-embedding figures",
        description=(
            "Draw what a model looks at: raw attention of a block/head, attention rollout "
            "(Abnar & Zuidema 2020) or gradient-weighted rollout (Chefer et al. 2021), as "
            "heatmaps over the face crop and the original photo. With --pos-embed, draw the "
            "cosine similarity of the position embeddings instead."
        ),
    )
    p.add_argument("source", metavar="BUNDLE|MODEL",
                   help="a model bundle folder; with --pos-embed also a registry name, a "
                        "checkpoint file or folder, or hf-hub:org/repo")
    p.add_argument("images", nargs="*", metavar="PATH",
                   help="images, videos or folders (walked recursively), as predict takes them")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="output folder for the PNGs")
    p.add_argument("--pos-embed", action="store_true",
                   help="draw the position-embedding similarity figure instead (no images)")
    p.add_argument("--pretrained", action="store_true",
                   help="with --pos-embed and a registry name: load its public checkpoint")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help="with --pos-embed and a bare state dict: its registry architecture")
    p.add_argument("--method", choices=METHODS, default="rollout",
                   help="attention: one block's raw attention; rollout: attention rollout; "
                        "grad-rollout: gradient-weighted rollout for --class (default rollout)")
    p.add_argument("--layer", type=int, default=None, metavar="L",
                   help="attention: the block shown; rollouts: the last block rolled through "
                        "(default: the last block; negative counts from the end)")
    p.add_argument("--head", type=int, default=None, metavar="H",
                   help="attention: one head (default: heads fused with --head-fusion)")
    p.add_argument("--head-fusion", choices=HEAD_FUSIONS, default="mean",
                   help="how heads are combined (default mean)")
    p.add_argument("--discard-ratio", type=float, default=0.0, metavar="R",
                   help="rollout: drop this fraction of the lowest attention entries per "
                        "block, never the class token's (default 0, e.g. 0.9)")
    p.add_argument("--query", default="auto", metavar="TOKEN",
                   help="whose attention: auto (class token, or the patch mean without one), "
                        "cls, dist, mean, or a token index (default auto)")
    p.add_argument("--class", dest="target", default=None, metavar="NAME|INDEX",
                   help="grad-rollout: class name or index to explain (default: predicted)")
    p.add_argument("--all-heads", action="store_true",
                   help="also write a grid of every block x head attention map per face")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames sampled uniformly from each video (default: the bundle's "
                   "frames_per_video, else 8)")
    p.add_argument("--whole-image", action="store_true",
                   help="treat each image as the face crop (no face detection)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="faces per forward (default 8)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- loading
def _is_bundle(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "format_version" in json.loads(cfg.read_text())
    except (json.JSONDecodeError, OSError):
        return False


def load_any_model(
    source: str, pretrained: bool = False, device: str = "cpu", arch: str | None = None
) -> nn.Module:
    """A model (eval mode) from a bundle folder, any checkpoint
    :func:`vitfas.weights.load_model` reads (file, folder or ``hf-hub:org/repo``), or a
    registry name (random weights unless ``pretrained``). ``arch`` names the registry
    architecture of a bare state dict."""
    from vitfas.weights import load_model

    p = Path(source)
    if p.is_dir() and _is_bundle(p):
        from vitfas.bundle import load_bundle

        return load_bundle(p, device=device).model
    if p.exists() or source.startswith("hf-hub:"):
        return load_model(source if source.startswith("hf-hub:") else p, arch).eval().to(device)
    if "/" in source or source.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz")):
        raise BadCheckpointError(f"{source}: no such file or folder")
    from vitfas.weights import create_model

    return create_model(source, pretrained=True if pretrained else None).eval().to(device)


# --------------------------------------------------------------------------- faces
@dataclass
class FaceCrop:
    """One face: the crop given to the model and where it came from in the photo."""

    crop: np.ndarray  # [S, S, 3] uint8 in the bundle's colour order, as the recipe made it
    crop_rgb: np.ndarray  # the same in RGB, for drawing
    box: Box  # region of the original photo covered by the crop (x0, y0, x1, y1)
    face_box: Box


def _img_size(pre: dict[str, Any], model: nn.Module) -> tuple[int, int]:
    size = pre.get("img_size")
    if size is None:
        size = getattr(getattr(model, "config", None), "img_size", None)
    if size is None:
        raise BadConfigError("bundle preprocessing has no img_size and the model no config")
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def crop_recipe(pre: dict[str, Any], size: tuple[int, int], whole_image: bool = False) -> Any:
    """The bundle's :class:`vitfas.faces.CropRecipe`.

    ``whole_image``: the photo already is the face crop: no detection, no extra margin
    (detector ``"none"``, scale 1). A non-square input size gets square crops of its
    height, resized to ``H x W`` by the eval transform.
    """
    import dataclasses

    from vitfas.faces import CropRecipe

    recipe = CropRecipe.from_preprocessing({**pre, "img_size": [size[0], size[0]]})
    if whole_image:
        recipe = dataclasses.replace(recipe, detector="none", scale=1.0)
    return recipe


def eval_transform(pre: dict[str, Any], size: tuple[int, int]) -> Any:
    """The evaluation transform of training (resize, scale to [0, 1], normalise)."""
    from vitfas.data.transforms import build_transforms

    kw = {k: pre[k] for k in ("mean", "std") if pre.get(k) is not None}
    if len(kw) < 2:
        log.warning("preprocessing has no mean/std; using the data pipeline's defaults")
    return build_transforms(False, list(size), **kw)


def faces_of(image: np.ndarray, recipe: Any) -> list[FaceCrop]:
    """Every face of one RGB photo (largest first), cropped exactly as in training."""
    from vitfas.faces import square_box

    out = []
    for face, crop in recipe.apply(image):
        x0, y0, side = square_box(face.box, recipe.scale)
        rgb = crop if recipe.colour_order == "RGB" else np.ascontiguousarray(crop[..., ::-1])
        out.append(FaceCrop(crop, rgb, (float(x0), float(y0), float(x0 + side),
                                        float(y0 + side)),
                            tuple(float(v) for v in face.box)))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- verbs
def _target(arg: str | None, class_names: list[str]) -> int | None:
    if arg is None:
        return None
    if arg in class_names:
        return class_names.index(arg)
    if arg.lstrip("-").isdigit():
        return int(arg)
    raise BadConfigError(f"--class {arg!r} is neither a class name {class_names} nor an index")


def _read_inputs(paths: list[str], n_frames: int, quiet: bool) -> Any:
    """``(path, frame index or None, RGB image or None, error or None)`` for every image and
    every sampled video frame under ``paths`` (:func:`vitfas.data.inputs.expand_inputs`).
    A file that cannot be read gives one item with its error, and the walk goes on."""
    from tqdm import tqdm

    from vitfas.data.inputs import expand_inputs, kind_of
    from vitfas.data.video import sample_frames

    for path in tqdm(expand_inputs(paths), desc="explain", unit="file", disable=quiet):
        try:
            if kind_of(path) == "video":
                frames = sample_frames(path, n_frames)
            else:
                frames = [(None, load_image(path))]
        except (BadImageError, BadVideoError) as exc:
            yield path, None, None, str(exc)
            continue
        for frame, rgb in frames:
            yield path, frame, rgb, None


def _unique_stem(base: str, used: set[str]) -> str:
    stem, k = base, 1
    while stem in used:
        k += 1
        stem = f"{base}_{k}"
    used.add(stem)
    return stem


def _usage(msg: str) -> int:
    import sys

    print(f"vitfas explain: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vitfas explain``."""
    if args.pos_embed:
        if args.images:
            return _usage("--pos-embed takes no images")
        return run_pos_embed(args)
    if not args.images:
        return _usage("give at least one IMAGE (or --pos-embed)")
    if args.head is not None and args.method != "attention":
        return _usage("--head applies to --method attention only")
    if args.discard_ratio and args.method != "rollout":
        return _usage("--discard-ratio applies to --method rollout only")
    if not 0.0 <= args.discard_ratio < 1.0:
        return _usage(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    if args.batch_size < 1:
        return _usage("--batch-size must be at least 1")
    if args.frames is not None and args.frames < 1:
        return _usage("--frames must be at least 1")
    return run_images(args)


def run_pos_embed(args: argparse.Namespace) -> int:
    """``vitfas explain MODEL_OR_BUNDLE --pos-embed -o DIR``."""
    model = load_any_model(args.source, args.pretrained, "cpu", args.arch)
    emb, grid = position_embedding(model)
    sim = similarity_maps(emb, grid)
    score = local_structure(sim)
    name = getattr(model, "registry_name", None) or Path(args.source).name
    kind = getattr(getattr(model, "config", None), "pos_embed", "learn")
    out = similarity_figure(
        sim, args.out / "pos_embed_similarity.png",
        title=f"{name}: position embedding ({kind}) cosine similarity",
    )
    summary = {"source": args.source, "grid": list(grid), "pos_embed": kind,
               "file": str(out), **score}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {out}  ({grid[0]}x{grid[1]} positions, {kind} embedding)")
        print(f"mean cosine similarity: neighbours {score['neighbour']:.3f}, far apart "
              f"{score['far']:.3f} (contrast {score['contrast']:+.3f}; about 0 means no 2-D "
              f"structure)")
    return 0


def run_images(args: argparse.Namespace) -> int:
    """``vitfas explain BUNDLE PATH... -o DIR``."""

    from vitfas.bundle import load_bundle

    src = Path(args.source)
    if not (src.is_dir() and _is_bundle(src)):
        raise BadCheckpointError(
            f"{src} is not a model bundle (a folder with config.json and model.safetensors); "
            f"explaining images needs a bundle for its preprocessing"
        )
    bundle = load_bundle(src, device=args.device)
    model, pre = bundle.model, bundle.preprocessing
    size = _img_size(pre, model)
    recipe = crop_recipe(pre, size, args.whole_image)
    transform = eval_transform(pre, size)
    class_names = bundle.class_names
    target = _target(args.target, class_names)
    if target is not None and args.method != "grad-rollout":
        log.info("--class only changes grad-rollout; %s ignores it", args.method)
    args.out.mkdir(parents=True, exist_ok=True)

    # gather faces image by image, explain them in batches
    pending: list[tuple[int, int, FaceCrop]] = []
    records: list[dict[str, Any]] = []
    images: dict[int, np.ndarray] = {}
    stems: dict[int, str] = {}
    used: set[str] = set()
    skipped: list[dict[str, str]] = []
    n_files = 0

    def flush() -> None:
        nonlocal n_files
        if not pending:
            return
        x = torch.stack([transform(f.crop) for _, _, f in pending]).to(args.device)
        e = explain(
            model, x, args.method, layer=args.layer, head=args.head,
            head_fusion=args.head_fusion, discard_ratio=args.discard_ratio, query=args.query,
            target=target,
        )
        grid_maps = layer_head_maps(model, x, args.query)[0] if args.all_heads else None
        probs = scaled_softmax(e.logits, bundle.temperature)  # P as predict/eval give it
        lay = e.layout
        for b, (i, k, face) in enumerate(pending):
            base = args.out / f"{stems[i]}.face{k}.{args.method}"
            m = e.maps[b].numpy()
            crop_png = save_png(f"{base}.crop.png", overlay_on_crop(
                face.crop_rgb, m, lay.patch_size, lay.input_size, args.alpha, args.cmap))
            heat = to_pixels(m, lay.patch_size, lay.input_size, face.crop_rgb.shape[:2])
            img_png = save_png(f"{base}.image.png", overlay_on_image(
                images[i], heat, box=face.box, alpha=args.alpha, cmap=args.cmap))
            files = [str(crop_png), str(img_png)]
            if grid_maps is not None:
                files.append(str(layer_head_figure(
                    face.crop_rgb, grid_maps[b].numpy(), lay.patch_size, lay.input_size,
                    args.out / f"{stems[i]}.face{k}.layers_heads.png", cmap=args.cmap,
                    title=f"{stems[i]} face {k}: attention of every block x head")))
            n_files += len(files)
            pred = int(probs[b].argmax())
            rec: dict[str, Any] = {
                "face": k,
                "crop_box": [round(v, 2) for v in face.box],
                "face_box": None if face.face_box is None
                else [round(v, 2) for v in face.face_box],
                "predicted": class_names[pred] if pred < len(class_names) else pred,
                "probabilities": [round(float(v), 6) for v in probs[b]],
                "files": files,
            }
            if bundle.live_index is not None:
                rec["p_live"] = round(float(probs[b, bundle.live_index]), 6)
            if e.target is not None:
                t = int(e.target[b])
                rec["explained_class"] = class_names[t] if t < len(class_names) else t
            records[i]["faces"].append(rec)
        pending.clear()

    n_frames = args.frames or int(pre.get("frames_per_video") or 8)
    for path, frame, rgb, error in _read_inputs(args.images, n_frames, args.quiet):
        where = f"{path} frame {frame}" if frame is not None else str(path)
        faces = faces_of(rgb, recipe) if rgb is not None else []
        if rgb is not None and not faces:
            error = f"{where}: no face found (failure to acquire)"
        if error is not None:  # reported once, in the summary
            skipped.append({"image": str(path), "error": error}
                           | ({"frame": frame} if frame is not None else {}))
            continue
        i = len(records)
        records.append({"image": str(path), "faces": []}
                       | ({"frame": frame} if frame is not None else {}))
        base = path.stem if frame is None else f"{path.stem}.frame{frame}"
        images[i], stems[i] = rgb, _unique_stem(base, used)
        for k, face in enumerate(faces):
            pending.append((i, k, face))
            if len(pending) >= args.batch_size:
                flush()
        # originals whose faces are all written are no longer needed
        for j in [j for j in images if all(p[0] != j for p in pending)]:
            del images[j]
    flush()

    ok = len(records)
    summary = {"bundle": str(src), "method": args.method, "out": str(args.out),
               "images": ok, "skipped": len(skipped), "files": n_files,
               "results": records, "errors": skipped}
    if args.json:
        print(json.dumps(summary))
    else:
        for r in records:
            at = f"{r['image']} frame {r['frame']}" if "frame" in r else r["image"]
            for f in r["faces"]:
                live = f" P(live)={f['p_live']:.3f}" if "p_live" in f else ""
                print(f"{at} face {f['face']}: {f['predicted']}{live} -> "
                      f"{', '.join(Path(x).name for x in f['files'])}")
        print(f"wrote {n_files} PNGs for {ok} image(s) to {args.out}"
              + (f"; skipped {len(skipped)}" if skipped else ""))
        for s in skipped:  # each message names its file
            print(f"  skipped: {s['error']}")
    return 1 if skipped else 0


__all__ = ["FaceCrop", "crop_recipe", "eval_transform", "faces_of", "load_any_model",
           "register", "run"]
