"""``vitfas demo``: the whole pipeline on built-in data, in a few minutes on a CPU.

Stages (each timed, wall clock and CPU):

1. **data** — :func:`vitfas.demo.dataset.build_demo_set`: real photos from scikit-image as
   bona fide, **simulated** print and replay recaptures as attacks, subject-disjoint
   train/dev/test splits, written as PNGs + ``manifest.csv``.
2. **train** — the shipped from-scratch recipe ``fas_scratch`` (CDC conv-stem ViT
   ``vit_cdcstem_w64_p8_64``, FAS-aware augmentation with blur and JPEG, class-balanced
   batches, label smoothing, best dev-EER epoch) through :func:`vitfas.train.run.
   run_training`, with the demo's own schedule (:func:`train_config`); no pretrained
   weights are available offline; the threshold is chosen on dev (EER) and stored in the
   bundle.
3. **eval** — :func:`vitfas.metrics.evaluation.run_eval` on dev and test at the bundle's
   dev threshold: ``metrics.json``, ``report.md`` and the ROC/DET/histogram/confusion PNGs.
4. **explain** — attention rollout (:func:`vitfas.explain.explain`) for a few test faces.
5. **predict** — :class:`vitfas.predict.Predictor` on held-out test images (they are face
   crops already, so the whole image is the face) and on any ``--predict`` paths (real
   photos: faces found by the bundle's detector, cropped with the LFW framing).
6. **fixtures** — how the bundle decides the real photos of the fixture folder
   (``../shared/fixtures/faces`` beside the repository, ``$VITFAS_DEMO_FIXTURES`` or
   ``fixtures=``) when it is present (:mod:`vitfas.demo.fixtures`); reporting only.

Output folder (``-o``, default ``runs/demo``)::

    data/         images, manifest.csv, README.md, simulation.jsonl
    train/        the training run (config.yaml, checkpoints, logs) and train/bundle/
    report/       metrics.json, report.md, *.png, scores.csv
    explain/      rollouts.png (grid) and one overlay per face
    predictions/  heldout.jsonl, predict.jsonl (with --predict), fixtures.jsonl
    demo.json     the summary (metrics, files, timings); summary.md, the printed text
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitfas.demo.fixtures import fixture_markdown, format_fixture_report
from vitfas.errors import BadConfigError
from vitfas.metrics.calibration import scaled_softmax

log = logging.getLogger(__name__)

__all__ = ["DemoModel", "format_summary", "run_demo"]

#: Everything ``run_demo`` writes; a folder holding only these (or ``demo.json``) may be
#: cleared and rewritten.
OUTPUTS = ("data", "train", "report", "explain", "predictions", "demo.json", "summary.md")
MARKER = "demo.json"


@dataclass(frozen=True)
class DemoModel:
    """The demo's network before issue #14: a ViT-Ti-like model, narrower and shallower,
    with serial adapters, trained with mild augmentation. ``run_demo(model=DemoModel())``
    and ``train_config(..., model=DemoModel())`` repeat it (``benchmarks/real_fas`` does);
    the demo itself now trains the ``fas_scratch`` recipe (``model=None``).

    Registry base ``vit_tiny_patch16_224`` with these overrides (recorded in full in the
    bundle's ``architecture.config``)."""

    patch_size: int = 8
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    adapter_bottleneck: int = 16


@dataclass
class _Clock:
    """Wall and CPU seconds per stage (CPU: this process, all threads)."""

    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return fn()
        finally:
            self.stages[name] = {"wall_s": round(time.perf_counter() - w, 2),
                                 "cpu_s": round(time.process_time() - c, 2)}

    def total(self) -> dict[str, float]:
        return {k: round(sum(s[k] for s in self.stages.values()), 2) for k in ("wall_s", "cpu_s")}


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear a previous demo's outputs in it; refuse any other folder
    that is not empty (nothing of the user's is deleted)."""
    if out.exists() and not out.is_dir():
        raise BadConfigError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise BadConfigError(
                f"-o {out}: the folder is not empty and holds no {MARKER} from an earlier "
                f"demo; choose a new or empty folder"
            )
        for name in OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"status": "running"}) + "\n")


#: The shipped from-scratch recipe the demo trains (``vitfas config show fas_scratch``).
RECIPE = "fas_scratch"


def train_config(manifest: Path, run_dir: Path, size: int, epochs: int, seed: int,
                 model: DemoModel | None, threads: int, batch_size: int) -> dict[str, Any]:
    """The ``vitfas train`` configuration the demo uses (also written as YAML to
    ``train/config.yaml``; ``vitfas train that.yaml out=...`` repeats the run).

    ``model=None`` (the demo's default): the shipped ``fas_scratch`` recipe as it is — CDC
    conv-stem ViT ``vit_cdcstem_w64_p8_64``, FAS-aware augmentation (framing, blur,
    exposure, JPEG), class-balanced sampling, label smoothing, best-dev-EER weights — with
    only what belongs to the demo's data changed: the manifest, ``img_size``, the schedule
    (``epochs``, ``batch_size``: a smaller set, so more, smaller steps), the seed, the
    threads, and the photo preprocessing recorded for predict/serve. A :class:`DemoModel`:
    the demo before issue #14 (plain ViT with adapters, mild augmentation), kept so that
    figures measured with it can be repeated.
    """
    import yaml

    from vitfas.configs import config_text
    from vitfas.demo.dataset import LFW_CROP_SCALE

    # real photos given to predict/serve: dlib face box, square side 1.18 x box, which
    # reproduces the framing of the LFW crops the model was trained on
    preprocessing = {"detector": "dlib", "crop_scale": LFW_CROP_SCALE}
    if model is None:
        cfg: dict[str, Any] = yaml.safe_load(config_text(RECIPE))
        cfg["out"] = str(run_dir)
        cfg["threads"] = threads
        cfg["data"].update(path=str(manifest), img_size=size, preprocessing=preprocessing)
        cfg["trainer"].update(epochs=epochs, batch_size=batch_size, seed=seed, log_every=10)
        return cfg
    return {
        "out": str(run_dir),
        "threads": threads,
        "model": {
            "name": "vit_tiny_patch16_224",
            "pretrained": None,  # nothing to download offline: from scratch
            "trainable": "full",  # the backbone is random, so it trains with the adapters
            "drop_path_rate": 0.0,
            "overrides": {"patch_size": model.patch_size, "embed_dim": model.embed_dim,
                          "depth": model.depth, "num_heads": model.num_heads},
        },
        "adapters": {"kind": "serial", "positions": ["mlp"],
                     "bottleneck": model.adapter_bottleneck},
        "data": {
            "format": "manifest",
            "path": str(manifest),
            "img_size": size,
            # mild geometry (the cues are textures whose scale matters), mild colour
            "augment": {"scale": [0.8, 1.0], "ratio": [0.9, 1.1], "hflip": 0.5,
                        "brightness": 0.1, "contrast": 0.1, "saturation": 0.05, "hue": 0.0},
            "balance": True,
            "preprocessing": preprocessing,
        },
        "optim": {"lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1, "min_lr": 1e-5},
        "trainer": {"epochs": epochs, "batch_size": batch_size, "best_metric": "eer",
                    "best_mode": "min", "log_every": 10, "seed": seed},
        "output": {"weights": "best", "threshold": "eer"},
    }


def _stamp_report(report_dir: Path, note: str) -> None:
    """Say in the evaluation report itself that the attacks are simulated."""
    mj = report_dir / "metrics.json"
    payload = json.loads(mj.read_text())
    payload.setdefault("meta", {})["data_note"] = note
    mj.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    md = report_dir / "report.md"
    lines = md.read_text().split("\n")
    lines[1:1] = ["", f"> **{note}**"]
    md.write_text("\n".join(lines))


def _pick_examples(rows: list[dict[str, str]], per_kind: int = 2) -> list[dict[str, str]]:
    """A few test images for explain and predict: the same subjects in every kind
    (astronaut first when it is in test), the first capture of each."""
    test = [r for r in rows if r["split"] == "test"]
    subjects = sorted({r["subject"] for r in test}, key=lambda s: (s != "astronaut", s))
    chosen = subjects[:per_kind]
    out = []
    for kind in ("none", "print", "replay"):
        for s in chosen:
            cand = [r for r in test if r["subject"] == s and r["attack_type"] == kind]
            if cand:
                out.append(sorted(cand, key=lambda r: r["path"])[0])
    return out


def _explain(bundle: Any, data_dir: Path, examples: list[dict[str, str]], out_dir: Path,
             zoom: int = 4) -> dict[str, Any]:
    """Attention rollout over each example; writes one overlay per image (``zoom`` x the
    input size) and ``rollouts.png`` (image | overlay per example, with the score)."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vitfas.data.io import load_image, save_image
    from vitfas.explain import explain, overlay_on_crop
    from vitfas.predict import Predictor

    out_dir.mkdir(parents=True, exist_ok=True)
    pred = Predictor(bundle)
    model = bundle.model.eval()
    size = pred.img_size
    p = model.patch_embed.patch_size
    patch = (p, p) if isinstance(p, int) else tuple(p)
    crops = [load_image(data_dir / r["path"]) for r in examples]
    x = torch.from_numpy(pred.preprocess(crops))
    with torch.no_grad():
        e = explain(model, x, "rollout")
    probs = scaled_softmax(e.logits, bundle.temperature)[:, bundle.live_index].numpy()
    files, items = [], []
    for r, crop, m, s in zip(examples, crops, e.maps.numpy(), probs):
        big = cv2.resize(crop, (crop.shape[1] * zoom, crop.shape[0] * zoom),
                         interpolation=cv2.INTER_NEAREST)
        ov = overlay_on_crop(big, m, patch, size)
        kind = "live" if r["attack_type"] == "none" else r["attack_type"]
        f = out_dir / f"{r['subject']}_{kind}.rollout.png"
        save_image(f, ov)
        files.append(str(f))
        items.append((big, ov, kind, r["subject"], float(s), pred.decide(float(s))))
    n = len(items)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.1), squeeze=False)
    for j, (big, ov, kind, subj, s, dec) in enumerate(items):
        axes[0, j].imshow(big)
        axes[0, j].set_title(f"{subj}\n{kind} (truth)", fontsize=8)
        axes[1, j].imshow(ov)
        axes[1, j].set_title(f"P(live) {s:.2f}\n-> {dec}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle("Attention rollout on held-out test faces (attacks simulated)", fontsize=9)
    fig.tight_layout()
    grid = out_dir / "rollouts.png"
    fig.savefig(grid, dpi=100)
    plt.close(fig)
    return {"grid": str(grid), "overlays": files}


def _predict(bundle: Any, data_dir: Path, examples: list[dict[str, str]],
             user_paths: Sequence[str | Path], out_dir: Path, quiet: bool) -> dict[str, Any]:
    """Predict the held-out examples (whole image = face) and the user's paths (the
    bundle's detector). JSON lines as ``vitfas predict`` writes them."""
    from tqdm import tqdm

    from vitfas.bundle import Bundle
    from vitfas.data.inputs import expand_inputs
    from vitfas.predict import Predictor
    from vitfas.predict.cli import predict_one

    out_dir.mkdir(parents=True, exist_ok=True)
    pre = {**bundle.preprocessing, "detector": "none", "crop_scale": 1.0}
    crops_bundle = Bundle(model=bundle.model, path=bundle.path,
                          config={**bundle.config, "preprocessing": pre})
    pred = Predictor(crops_bundle)
    held = []
    for i, r in enumerate(examples):
        rec = predict_one(pred, data_dir / r["path"], None, i)
        rec["truth"] = {"label": r["label"], "attack_type": r["attack_type"]}
        held.append(rec)
    f_held = out_dir / "heldout.jsonl"
    f_held.write_text("".join(json.dumps(r) + "\n" for r in held))
    result: dict[str, Any] = {
        "heldout": {
            "file": str(f_held),
            "n": len(held),
            "correct": sum(r.get("decision") == r["truth"]["label"] for r in held),
            "records": [{"path": r["path"], "truth": r["truth"]["attack_type"],
                         "score": r.get("score"), "decision": r.get("decision")}
                        for r in held],
        }
    }
    if user_paths:
        files = expand_inputs(list(user_paths))
        upred = Predictor(bundle)
        recs = [predict_one(upred, f, None, i)
                for i, f in enumerate(tqdm(files, desc="predict", unit="file",
                                           disable=quiet or len(files) < 2))]
        f_user = out_dir / "predict.jsonl"
        f_user.write_text("".join(json.dumps(r) + "\n" for r in recs))
        counts: dict[str, int] = {}
        for r in recs:
            key = r.get("decision") or r["status"]
            counts[key] = counts.get(key, 0) + 1
        result["predict"] = {
            "file": str(f_user),
            "n": len(recs),
            "counts": counts,
            "detector": bundle.preprocessing.get("detector"),
            "records": [{"path": r["path"], "status": r["status"],
                         "faces": len(r.get("faces") or []), "score": r.get("score"),
                         "decision": r.get("decision")} for r in recs],
        }
    return result


def run_demo(
    out: str | Path = "runs/demo",
    *,
    epochs: int = 30,
    predict: Sequence[str | Path] = (),
    quiet: bool = False,
    size: int = 64,
    subjects: int = 100,
    captures: tuple[int, int, int] = (4, 2, 2),
    seed: int = 0,
    model: DemoModel | None = None,
    threads: int = 1,
    batch_size: int = 32,
    fixtures: str | Path | None = None,
) -> dict[str, Any]:
    """Run the whole demo and return its summary (also written to ``OUT/demo.json``).

    Args:
        out: output folder (created; a previous demo's outputs in it are replaced).
        epochs: training epochs.
        predict: extra images, videos or folders to score with the trained bundle.
        size: image and model input side in pixels.
        subjects: how many of the 100 LFW crops to use (fewer for a quick run).
        captures: live, print and replay images per subject.
        model: ``None`` (default): the shipped ``fas_scratch`` recipe (CDC conv-stem ViT);
            a :class:`DemoModel`: the pre-#14 plain ViT with adapters.
        threads: torch CPU threads (1 is fastest for this small model on a shared
            2-core machine; set 0 for torch's default).
        fixtures: a folder of real face photos to report on after training (never trained
            or tuned on; see :mod:`vitfas.demo.fixtures`). ``None``: ``$VITFAS_DEMO_FIXTURES``
            or ``<repository root>/../shared/fixtures/faces``, skipped (and said so) when
            absent; ``""``: no fixture report. A folder given explicitly must exist.
    """
    from vitfas.data.manifest import read_manifest
    from vitfas.demo.dataset import SIMULATION_NOTE, build_demo_set
    from vitfas.train.config import load_config
    from vitfas.train.run import TrainConfig, run_training

    if epochs < 1:
        raise BadConfigError(f"--epochs: expected at least 1, got {epochs}")
    stride = model.patch_size if model is not None else _recipe_stride()
    if size % stride:
        raise BadConfigError(f"--size {size}: expected a multiple of the patch size "
                             f"{stride}")
    for p in predict:
        if not Path(p).exists():
            raise BadConfigError(f"--predict {p}: no such file or folder")
    fixtures_dir = _fixtures_dir(fixtures)
    out = Path(out)
    _prepare_out(out)
    clock = _Clock()
    old_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        live, prints, replays = captures
        manifest = clock.run("data", lambda: build_demo_set(
            out / "data", size=size, live=live, prints=prints, replays=replays, seed=seed,
            n_lfw=subjects, progress=not quiet))
        rows = read_manifest(manifest)
        n_train = sum(r["split"] == "train" for r in rows)
        cfg_data = train_config(manifest, out / "train", size, epochs, seed, model, threads,
                                min(batch_size, n_train))  # tiny runs: one batch per epoch
        cfg = load_config(TrainConfig, None, data=cfg_data)
        log.info("training a ViT with adapters from scratch (%d epochs)", epochs)
        trained = clock.run("train", lambda: run_training(cfg, quiet=quiet))
        bundle_dir = Path(trained["bundle"])

        from vitfas.bundle import load_bundle
        from vitfas.metrics.evaluation import run_eval

        report = clock.run("eval", lambda: run_eval(
            bundle_dir, manifest, out_dir=out / "report", progress=not quiet))
        _stamp_report(out / "report", SIMULATION_NOTE)
        bundle = load_bundle(bundle_dir)
        examples = _pick_examples(rows)
        expl = clock.run("explain", lambda: _explain(bundle, out / "data", examples,
                                                    out / "explain"))
        preds = clock.run("predict", lambda: _predict(bundle, out / "data", examples, predict,
                                                     out / "predictions", quiet))
        real = clock.run("fixtures", lambda: _fixtures(bundle, fixtures_dir,
                                                      out / "predictions"))
    finally:
        torch.set_num_threads(old_threads)

    splits = sorted({r["split"] for r in rows})
    counts = {s: {k: sum(1 for r in rows if r["split"] == s and r["attack_type"] == k)
                  for k in ("none", "print", "replay")} for s in splits}
    n_subjects = {s: len({r["subject"] for r in rows if r["split"] == s}) for s in splits}
    frame = report["frame"]
    summary: dict[str, Any] = {
        "note": SIMULATION_NOTE,
        "out": str(out),
        "data": {"manifest": str(manifest), "images": len(rows),
                 "subjects": n_subjects, "counts": counts, "size": size,
                 "captures_per_subject": {"live": live, "print": prints, "replay": replays},
                 "readme": str(out / "data" / "README.md")},
        "model": _model_summary(bundle, model, size, trained["total_params"]),
        "train": {"run_dir": trained["run_dir"], "epochs": epochs, "steps": trained["steps"],
                  "best_epoch": trained["best_epoch"], "bundle": str(bundle_dir),
                  "threads": threads, "batch_size": cfg_data["trainer"]["batch_size"],
                  "augment": cfg_data["data"]["augment"],
                  "balance": cfg_data["data"].get("balance", False),
                  "label_smoothing": (cfg_data.get("loss") or {}).get("label_smoothing", 0.0),
                  "weights": cfg_data["output"]["weights"]},
        "threshold": frame["threshold"],
        "metrics": {name: _headline(m) for name, m in frame["splits"].items()},
        "report": {k: str(v) for k, v in (report.get("files") or {}).items()},
        "explain": expl,
        **preds,
        "fixtures": real,
        "timing": {**clock.stages, "total": clock.total()},
    }
    (out / MARKER).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text("```\n" + format_summary(summary) + "\n```\n\n"
                                    + fixture_markdown(real))
    return summary


def _recipe_stride() -> int:
    """The total stride (patch size) of the recipe's registered model."""
    import yaml

    from vitfas.configs import config_text
    from vitfas.models.registry import get_entry

    name = yaml.safe_load(config_text(RECIPE))["model"]["name"]
    return int(get_entry(name).config.patch_size)


def _fixtures_dir(fixtures: str | Path | None) -> Path | None:
    """The fixture folder to report on (``None``: no report). An explicit folder must
    exist; the default one may be absent (the report then says it was skipped)."""
    from vitfas.demo.fixtures import default_fixtures_dir

    if fixtures is None:
        return default_fixtures_dir()
    if str(fixtures) == "":
        return None
    d = Path(fixtures)
    if not d.is_dir():
        raise BadConfigError(f"--fixtures {d}: expected a folder of face photos, found "
                             f"{'a file' if d.exists() else 'nothing'} there")
    return d


def _fixtures(bundle: Any, folder: Path | None, out_dir: Path) -> dict[str, Any]:
    """Score the fixture photos with the bundle (its detector and dev threshold) and
    count what it got right; ``fixtures.jsonl`` keeps the raw records."""
    from vitfas.demo.fixtures import empty_report, fixture_report, score_fixtures
    from vitfas.predict import Predictor

    if folder is None:
        return empty_report(None, "off", "off (--no-fixtures)")
    if not folder.is_dir():
        return fixture_report(folder, None)
    recs = score_fixtures(Predictor(bundle), folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    f = out_dir / "fixtures.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {**fixture_report(folder, recs), "file": str(f)}


def _model_summary(bundle: Any, model: DemoModel | None, size: int, params: int
                   ) -> dict[str, Any]:
    """What the summary says about the network: read back from the bundle."""
    arch = bundle.config["architecture"]
    c = arch["config"]
    out: dict[str, Any] = {
        "registry_name": arch["name"], "class": arch["class"], "img_size": size,
        "patch_size": c["patch_size"], "embed_dim": c["embed_dim"], "depth": c["depth"],
        "num_heads": c["num_heads"], "pretrained": None, "trainable": "full",
        "params": params,
        "recipe": RECIPE if model is None else "plain ViT + adapters (pre-#14 demo)",
    }
    if "stem" in c:
        out.update(stem=c["stem"], stem_channels=c["stem_channels"], cdc_theta=c["cdc_theta"])
    if model is not None:
        out["adapter_bottleneck"] = model.adapter_bottleneck
    return out


def _model_line(m: dict[str, Any]) -> str:
    """The summary's ``model`` line."""
    size = f"{m['params'] / 1e6:.2f} M parameters, trained from scratch (no pretrained " \
        "weights offline)"
    if "stem" in m:
        stem = "CDC" if m["stem"] == "cdc" else "plain"
        theta = f", theta {m['cdc_theta']}" if m["stem"] == "cdc" else ""
        chans = "/".join(str(c) for c in m["stem_channels"])
        return (f"model      {m['registry_name']} ({m['recipe']} recipe): ViT with a {stem} "
                f"conv stem ({chans} channels, stride {m['patch_size']}{theta}), width "
                f"{m['embed_dim']}, depth {m['depth']}, {m['num_heads']} heads, "
                f"{m['img_size']} px; {size}")
    return (f"model      ViT patch {m['patch_size']}, width {m['embed_dim']}, depth "
            f"{m['depth']}, {m['num_heads']} heads, {m['img_size']} px + serial adapters "
            f"(r={m.get('adapter_bottleneck')}); {size}")


def _training_choices(t: dict[str, Any]) -> str:
    """Augmentation, sampling, loss and weight selection in a few words."""
    a = t.get("augment") or {}
    parts = [f"crop scale {a['scale'][0]:g}-{a['scale'][1]:g}" if "scale" in a else "",
             f"brightness/contrast {a.get('brightness', 0):g}/{a.get('contrast', 0):g}",
             f"blur p {a['blur']:g}" if a.get("blur") else "",
             (f"JPEG p {a['jpeg']:g} (q {a['jpeg_quality'][0]}-{a['jpeg_quality'][1]})"
              if a.get("jpeg") else "")]
    aug = ", ".join(p for p in parts if p)
    balance = "class-balanced" if t.get("balance") else "unbalanced"
    weights = ("weights of the best dev-EER epoch" if t.get("weights", "best") == "best"
               else "last epoch's weights")
    return (f"augment: {aug}; {balance} batches of {t.get('batch_size')}; label smoothing "
            f"{t.get('label_smoothing', 0):g}; {weights}")


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    at = m["at_threshold"]
    return {
        "counts": m["counts"],
        "apcer": at["apcer"], "apcer_max": at["apcer_max"], "bpcer": at["bpcer"],
        "acer": at["acer"], "hter": at["hter"], "eer": m["eer"], "auc": m["auc"],
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_summary(s: dict[str, Any]) -> str:
    """The text ``vitfas demo`` prints at the end."""
    d, m, t = s["data"], s["model"], s["train"]
    subj = s["data"]["subjects"]
    lines = [
        "vitfas demo: face anti-spoofing end to end on built-in data",
        "NOTE: the print and replay attacks are SIMULATED from the bona fide photos; the "
        "figures show the pipeline works, not real-world performance.",
        "",
        f"data       {d['images']} images of {sum(subj.values())} subjects "
        f"(train {subj.get('train', 0)} / dev {subj.get('dev', 0)} / test "
        f"{subj.get('test', 0)}), {d['size']} px: {d['manifest']}",
        "           live: LFW crops + astronaut + coffee (scikit-image); "
        "print/replay: simulated recaptures",
        _model_line(m),
        f"training   {t['epochs']} epochs, {t['steps']} steps, best dev EER at epoch "
        f"{t['best_epoch']}: {t['run_dir']}",
        f"           {_training_choices(t)}",
        f"threshold  {s['threshold']['value']:.4f}, {s['threshold']['criterion']}",
    ]
    for split in ("dev", "test"):
        x = s["metrics"].get(split)
        if not x:
            continue
        per = "  ".join(f"{k} {_pct(v)}" for k, v in sorted(x["apcer"].items()))
        lines.append(
            f"{split:<10} APCER {per} (max {_pct(x['apcer_max'])})  BPCER {_pct(x['bpcer'])}"
            f"  ACER {_pct(x['acer'])}  EER {_pct(x['eer'])}  AUC {x['auc']:.3f}"
        )
    rep = s["report"]
    lines.append(f"report     {rep.get('markdown', '')} (+ metrics.json, ROC/DET/histogram/"
                 "confusion PNGs)")
    lines.append(f"explain    {s['explain']['grid']} (+ {len(s['explain']['overlays'])} "
                 "overlays)")
    h = s["heldout"]
    lines.append(f"predict    {h['file']}: {h['correct']}/{h['n']} held-out test images right")
    for r in h["records"]:
        name = "/".join(Path(r["path"]).parts[-3:])
        truth = "live" if r["truth"] == "none" else r["truth"]
        lines.append(f"             {name:<28} {truth:<7} -> {r['decision']} "
                     f"(P(live) {r['score']:.2f})")
    if "predict" in s:
        p = s["predict"]
        c = ", ".join(f"{v} {k}" for k, v in sorted(p["counts"].items()))
        lines.append(f"--predict   {p['file']}: {p['n']} files ({c}); faces by {p['detector']}")
        for r in p["records"][:12]:
            res = (f"-> {r['decision']} (P(live) {r['score']:.2f}, {r['faces']} face(s))"
                   if r["status"] == "ok" else r["status"])
            lines.append(f"             {Path(r['path']).name:<28} {res}")
        if len(p["records"]) > 12:
            lines.append(f"             ... {len(p['records']) - 12} more in {p['file']}")
    fx = s.get("fixtures")
    if fx and fx["status"] != "off":
        rows = format_fixture_report(fx)
        lines.append(f"real faces {rows[0]}")
        lines += [r if r.startswith(" ") else "           " + r for r in rows[1:]]
    lines.append(f"bundle     {t['bundle']}  (vitfas predict {t['bundle']} photo.jpg)")
    tm = s["timing"]
    parts = ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in tm.items() if k != "total")
    lines.append(f"time       {tm['total']['wall_s']:.0f} s wall, {tm['total']['cpu_s']:.0f} s "
                 f"CPU ({parts})")
    return "\n".join(lines)
