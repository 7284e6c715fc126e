"""``vitfas eval BUNDLE MANIFEST``: score a manifest with a bundle and report ISO metrics.

Steps: load the bundle (:func:`vitfas.bundle.load_bundle`), read the manifest through
``vitfas.data.datasets.ManifestDataset`` with the bundle's own preprocessing, score every
row of the dev and test splits (score = softmax(logits / T)[live_index] = P(live), T the
bundle's calibration temperature, 1 when it has none), choose or take the operating
threshold, compute frame-level and video-level metrics (:func:`vitfas.metrics.evaluate`),
with the dev margin and the ECE, and write the report (:func:`write_report`).

Failures to acquire: a row whose ``fta`` column is ``1``/``true``/``yes`` or whose ``path``
is empty is an FTA; a row whose image cannot be read is also counted as an FTA (and listed
as ``unreadable``, in ``unreadable.csv``). None is dropped.

The metrics and report of per-row scores are :func:`evaluate_scored`'s, shared with
``vitfas eval --scores`` (:mod:`vitfas.metrics.scorefile`) and ``vitfas baseline``;
``vitfas eval --compare`` is :mod:`vitfas.metrics.compare`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitfas.distributed import distributed_map, get_rank, init_distributed
from vitfas.errors import BadCheckpointError, BadDataError, VitfasError
from vitfas.metrics.calibration import scaled_softmax
from vitfas.metrics.core import (
    LIVE_LABELS,
    Scores,
    Threshold,
    aggregate_videos,
    describe_margin,
    evaluate,
    parse_criterion,
    select_threshold,
)
from vitfas.metrics.report import pct, write_report

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "y"}


def row_is_fta(row: dict[str, str]) -> bool:
    """A manifest row is a failure to acquire: ``fta`` is 1/true/yes, or ``path`` is empty."""
    return str(row.get("fta", "") or "").strip().lower() in _TRUE or not str(
        row.get("path", "") or ""
    ).strip()


def video_key(row: dict[str, str]) -> str:
    """The video a row belongs to: ``dataset/video`` when ``video`` is set, else ``""``."""
    v = str(row.get("video", "") or "").strip()
    return f"{str(row.get('dataset', '') or '').strip()}/{v}" if v else ""


def _open_dataset(manifest: Path, bundle: Any) -> Any:
    """``ManifestDataset`` over the whole manifest with the bundle's eval preprocessing."""
    from vitfas.data.datasets import ManifestDataset
    from vitfas.data.transforms import build_transforms

    pre = bundle.preprocessing
    img_size = pre.get("img_size") or list(getattr(bundle.model.config, "img_size", ()))
    for key in ("mean", "std"):
        if key not in pre:
            raise BadCheckpointError(
                f"{bundle.path}/config.json: preprocessing has no {key!r}; found keys "
                f"{sorted(pre)}"
            )
    if not img_size:
        raise BadCheckpointError(f"{bundle.path}/config.json: preprocessing has no 'img_size'")
    transform = build_transforms(False, img_size=img_size, mean=pre["mean"], std=pre["std"])
    return ManifestDataset(manifest, transform=transform, class_names=bundle.class_names)


class _Safe(torch.utils.data.Dataset):
    """Wraps a dataset: item ``j`` -> ``(image, j, ok)``; unreadable images give ``ok=False``."""

    def __init__(self, ds: Any, indices: Sequence[int], shape: tuple[int, ...]) -> None:
        self.ds, self.indices, self.shape = ds, list(indices), shape

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, bool]:
        try:
            img = self.ds[self.indices[j]][0]
            return img, j, True
        except VitfasError as exc:
            log.warning("row %d: %s (counted as a failure to acquire)", self.indices[j], exc)
            return torch.zeros(self.shape), j, False


@dataclass
class ScoredManifest:
    """Per-row results of scoring a manifest (rows in manifest order).

    ``scores`` is ``[N]`` P(live) with ``nan`` for FTA rows; ``fta`` ``[N]`` bool;
    ``unreadable`` lists row indices whose image could not be read (also FTA).
    """

    rows: list[dict[str, str]]
    scores: np.ndarray
    fta: np.ndarray
    unreadable: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)  # row index -> why it was unreadable


@torch.inference_mode()
def score_manifest(
    bundle: Any,
    manifest: str | Path,
    splits: Sequence[str] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    open_dataset: Callable[[Path, Any], Any] | None = None,
) -> ScoredManifest:
    """Score the rows of ``manifest`` (those of ``splits``; all if none matches) with ``bundle``.

    Returns per-row P(live) = ``softmax(logits / T)[live_index]`` (``[N]``, ``nan`` where
    FTA; ``T`` = ``bundle.temperature``). FTA rows (see :func:`row_is_fta`)
    are not read. ``open_dataset(manifest, bundle)`` builds the dataset (default:
    ``ManifestDataset`` with the bundle's preprocessing); its ``.rows`` are the manifest
    rows and item ``i`` is ``(image [3, H, W], label)``.
    """
    from tqdm import tqdm

    if bundle.live_index is None:
        raise BadCheckpointError(
            f"{bundle.path}: bundle has no live_index (class names {bundle.class_names}); "
            "eval needs a face anti-spoofing bundle"
        )
    ds = (open_dataset or _open_dataset)(Path(manifest), bundle)
    rows = list(ds.rows)
    if not rows:
        raise BadDataError(f"{manifest}: the manifest has no rows")
    n = len(rows)
    keep = np.ones(n, dtype=bool) if not splits else np.array(
        [str(r.get("split", "")).strip() in set(splits) for r in rows]
    )
    if not keep.any():  # none of the named splits: score everything
        keep[:] = True
    fta = np.array([row_is_fta(r) for r in rows])
    todo = [i for i in range(n) if keep[i] and not fta[i]]
    scores = np.full(n, np.nan)
    unreadable: list[int] = []
    model = bundle.model.to(device).eval()
    temperature = bundle.temperature
    if todo:
        cfg_size = getattr(bundle.model.config, "img_size", (224, 224))
        size = tuple(bundle.preprocessing.get("img_size") or cfg_size)

        @torch.inference_mode()
        def score_rows(chunk: Sequence[int]) -> list[float | None]:
            out: list[float | None] = [None] * len(chunk)
            loader = torch.utils.data.DataLoader(_Safe(ds, chunk, (3, *size)),
                                                 batch_size=batch_size, shuffle=False,
                                                 num_workers=num_workers)
            bar = tqdm(total=len(chunk), desc="scoring", unit="img",
                       disable=not progress or get_rank() != 0)
            for imgs, js, ok in loader:
                logits = model(imgs.to(device))
                p = scaled_softmax(logits.float(), temperature)[:, bundle.live_index]
                p = p.cpu().tolist()
                for j, okj, pj in zip(js.tolist(), ok.tolist(), p):
                    out[j] = pj if okj else None
                bar.update(len(js))
            bar.close()
            return out

        # under torchrun each rank scores a contiguous share; all ranks get every score
        for i, pj in zip(todo, distributed_map(score_rows, todo)):
            if pj is None:
                unreadable.append(i)
                fta[i] = True
            else:
                scores[i] = pj
    return ScoredManifest(rows, scores, fta, sorted(unreadable))


def scores_for_split(sm: ScoredManifest, split: str | None, species: Sequence[str]) -> Scores:
    """:class:`Scores` of the rows of ``split`` (all rows for ``None``); ids = row paths."""
    idx = [i for i, r in enumerate(sm.rows)
           if split is None or str(r.get("split", "")).strip() == split]
    if not idx:
        raise BadDataError(f"no manifest rows in split {split!r}")
    rows = [sm.rows[i] for i in idx]
    try:
        return Scores.from_arrays(
            sm.scores[idx],
            [r.get("label", "") for r in rows],
            [r.get("attack_type", "") for r in rows],
            fta=sm.fta[idx],
            ids=[r.get("path", "") or f"row{i}" for i, r in zip(idx, rows)],
            species=species,
        )
    except BadDataError as exc:
        raise BadDataError(f"split {split!r}: {exc}") from exc


def _check_both(name: str, level: str, s: Scores) -> None:
    if s.n_live == 0 or s.n_attack == 0:
        raise BadDataError(
            f"{level}-level split {name!r} has {s.n_live} bona fide and {s.n_attack} attack "
            "presentations; the metrics need both"
        )


def manifest_for(data: str | Path, out_dir: str | Path | None = None) -> Path:
    """The manifest to evaluate: ``data`` itself when it is a CSV file, or one indexed from
    a dataset folder (``[split/]live/**`` and ``[split/]spoof/[attack_type/]**``, the layout
    ``vitfas train`` reads as ``format: imagefolder``), written to ``out_dir/manifest.csv``
    (a temporary folder when ``out_dir`` is ``None``).

    Raises:
        BadDataError: ``data`` does not exist, or a folder not in that layout.
    """
    p = Path(data)
    if p.is_file():
        return p
    if not p.is_dir():
        raise BadDataError(
            f"{p} does not exist: give a manifest CSV (made by `vitfas data index ROOT -l "
            f"LAYOUT -o manifest.csv`) or a dataset folder with live/ and spoof/ sub-folders"
        )
    import tempfile

    from vitfas.data.layouts import index_dataset
    from vitfas.data.manifest import write_manifest

    rows = index_dataset("folder", p)
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="vitfas-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = write_manifest(folder / "manifest.csv", rows)
    log.info("indexed %d files of %s into %s", len(rows), p, out)
    return out


def run_eval(
    bundle_path: str | Path,
    manifest: str | Path,
    *,
    dev_split: str = "dev",
    test_split: str = "test",
    criterion: str | None = None,
    threshold: float | None = None,
    attack_fta: str = "reject",
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    open_dataset: Callable[[Path, Any], Any] | None = None,
) -> dict[str, Any]:
    """The whole ``vitfas eval``; returns the report payload (``metrics.json``'s content).

    Threshold, in order of precedence: ``threshold`` (a value); ``criterion`` (chosen on
    ``dev_split`` of this manifest, separately at frame and video level); the bundle's
    threshold; else the dev EER of this manifest. Splits evaluated: ``dev_split`` and
    ``test_split`` where present; a manifest with neither is evaluated whole as ``test``.
    """
    from vitfas.bundle import load_bundle

    bundle = load_bundle(bundle_path, device=device)
    manifest = manifest_for(manifest, out_dir)
    sm = score_manifest(bundle, manifest, [dev_split, test_split], batch_size, num_workers,
                        device, progress, open_dataset)
    fallback = None
    if bundle.threshold is not None:
        t = bundle.config.get("threshold") or {}
        fallback = Threshold.from_dict(t, f"{t.get('criterion', 'bundle')} (from the bundle)")
    return evaluate_scored(
        sm, manifest, source={"bundle": str(bundle.path), "model_id": bundle.model_id},
        dev_split=dev_split, test_split=test_split, criterion=criterion, threshold=threshold,
        fallback=fallback, attack_fta=attack_fta, out_dir=out_dir,
    )


def evaluate_scored(
    sm: ScoredManifest,
    manifest: str | Path,
    *,
    source: dict[str, Any],
    dev_split: str = "dev",
    test_split: str = "test",
    criterion: str | None = None,
    threshold: float | None = None,
    fallback: Threshold | None = None,
    attack_fta: str = "reject",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics and report for per-row scores of a manifest, whatever method made them.

    Shared by ``vitfas eval`` (a network bundle), ``vitfas eval --scores`` (a score file)
    and ``vitfas baseline`` (the LBP baseline). Threshold, in order of precedence:
    ``threshold`` (a value); ``criterion`` (chosen on ``dev_split``, separately at frame
    and video level, through :func:`vitfas.metrics.select_threshold`); ``fallback`` (e.g.
    the bundle's); else the dev EER. Writes ``metrics.json``, ``report.md``, figures,
    ``scores.csv`` (and ``unreadable.csv`` when images could not be read) into ``out_dir``.

    Args:
        sm: the scored rows (``nan`` score = not scored or FTA; ``fta`` flags).
        source: what made the scores, first keys of ``meta`` (``bundle``, ``model_id``).

    Returns:
        ``{"meta", "frame", ["video"], ["files"]}``; ``metrics.json`` holds all but files.
    """
    present = {str(r.get("split", "")).strip() for r in sm.rows}
    wanted = [s for s in (dev_split, test_split) if s in present]
    species = sorted({str(r.get("attack_type", "")).strip() for r in sm.rows
                      if str(r.get("label", "")).strip().lower() not in LIVE_LABELS}
                     - {"", "none"})
    if wanted:
        frame = {name: scores_for_split(sm, name, species) for name in wanted}
    else:
        log.warning("%s has no %r or %r rows; evaluating every row as %r", manifest,
                    dev_split, test_split, test_split)
        frame = {test_split: scores_for_split(sm, None, species)}

    if threshold is not None:
        fixed: Threshold | None = Threshold(float(threshold), "given on the command line", None)
    elif criterion is not None:
        parse_criterion(criterion)  # usage errors before any work
        if dev_split not in frame:
            raise BadDataError(
                f"--criterion {criterion} needs a {dev_split!r} split in {manifest}; found "
                f"splits {sorted(present)}"
            )
        fixed = None
    elif fallback is not None:
        fixed = fallback
    elif dev_split in frame:
        criterion, fixed = "eer", None
    else:
        what = source.get("bundle") or source.get("scores") or source.get("model_id")
        raise BadDataError(
            f"{what} has no threshold and {manifest} has no {dev_split!r} split to "
            "choose one on; pass --threshold or --criterion with a dev split"
        )

    levels: dict[str, tuple[dict[str, Any], dict[str, Scores]]] = {}
    keys = [video_key(r) for r in sm.rows]
    level_scores: dict[str, dict[str, Scores]] = {"frame": frame}
    if any(keys):
        video = {}
        for name, s in frame.items():
            idx = [i for i, r in enumerate(sm.rows)
                   if (str(r.get("split", "")).strip() == name) or not wanted]
            video[name] = aggregate_videos(s, [keys[i] for i in idx])
        if any(len(video[n]) < len(frame[n]) for n in frame):
            level_scores["video"] = video
    for level, splits in level_scores.items():
        for name, s in splits.items():
            _check_both(name, level, s)
        if fixed is not None:
            thr = fixed
        else:
            thr = select_threshold(splits[dev_split], criterion or "eer", dev_split,
                                   attack_fta)  # type: ignore[arg-type]
        levels[level] = (evaluate(splits, threshold=thr, attack_fta=attack_fta),  # type: ignore[arg-type]
                         splits)

    meta = {
        **source,
        "manifest": str(manifest),
        "rows": len(sm.rows),
        "rows_evaluated": int(sum(len(s) for s in frame.values())),
        "fta_rows": int(sum(int(s.fta.sum()) for s in frame.values())),
        "unreadable_rows": len(sm.unreadable),
        "fta_rule": "fta column 1/true/yes, empty path, or unreadable image",
    }
    payload: dict[str, Any] = {"meta": meta, **{lvl: res for lvl, (res, _) in levels.items()}}
    if out_dir is not None and get_rank() == 0:  # under torchrun rank 0 writes the report
        out = Path(out_dir)
        title = f"vitfas eval: {meta.get('model_id')}"
        files = write_report(out, levels, title=title, meta=meta)
        _write_scores_csv(out / "scores.csv", sm)
        payload["files"] = {k: str(v) for k, v in files.items()} | {
            "scores": str(out / "scores.csv")}
        if sm.errors or sm.unreadable:
            payload["files"]["unreadable"] = str(
                write_unreadable_csv(out / "unreadable.csv", sm))
    return payload


def write_unreadable_csv(path: Path, sm: ScoredManifest) -> Path:
    """``row, path, split, error`` for every row whose image could not be read."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "path", "split", "error"])
        for i in sorted(set(sm.errors) | set(sm.unreadable)):
            r = sm.rows[i]
            w.writerow([i, r.get("path", ""), r.get("split", ""), sm.errors.get(i, "")])
    return path


def _write_scores_csv(path: Path, sm: ScoredManifest) -> None:
    """Per-row scores: the manifest columns plus ``score`` (P(live), empty for FTA), ``fta``."""
    cols: list[str] = []
    for r in sm.rows:
        cols += [c for c in r if c not in cols]
    cols = [c for c in cols if c not in ("score", "fta")] + ["score", "fta"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r, s, ft in zip(sm.rows, sm.scores, sm.fta):
            w.writerow({**r, "score": "" if np.isnan(s) else f"{s:.8g}", "fta": int(ft)})


def format_summary(payload: dict[str, Any]) -> str:
    """The human summary ``vitfas eval`` prints."""
    m = payload["meta"]
    lines = [
        f"model {m['model_id']}  manifest {m['manifest']}",
        f"rows evaluated {m['rows_evaluated']} of {m['rows']}; failures to acquire "
        f"{m['fta_rows']} (unreadable images {m['unreadable_rows']})",
    ]
    for level in ("frame", "video"):
        if level not in payload:
            continue
        res = payload[level]
        thr = res["threshold"]
        where = f", chosen on {thr['split']}" if thr.get("split") else ""
        lines += ["", f"{level} level: threshold {thr['value']:.6g} ({thr['criterion']}{where})"]
        if thr.get("margin"):
            lines.append(f"  {thr.get('split') or 'dev'} margin: {describe_margin(thr['margin'])}")
        lines.append(f"  {'split':<8}{'n':>6}{'APCER max':>22}{'BPCER':>9}{'ACER':>9}"
                     f"{'HTER':>9}{'EER':>9}{'AUC':>8}{'BPCER20':>9}{'ECE':>8}")
        for name, sm in res["splits"].items():
            at = sm["at_threshold"]
            n = sm["counts"]["bona_fide"] + sm["counts"]["attack"]
            worst = f"{pct(at['apcer_max'])} ({at['apcer_max_type']})"
            lines.append(
                f"  {name:<8}{n:>6}{worst:>22}{pct(at['bpcer']):>9}{pct(at['acer']):>9}"
                f"{pct(at['hter']):>9}{pct(sm['eer']):>9}{sm['auc']:>8.4f}"
                f"{pct(sm['bpcer20']['value']):>9}{_ece(sm):>8}"
            )
        for name, sm in res["splits"].items():
            o = sm["hter_at_own_eer_threshold"]
            lines.append(f"  HTER at {name}'s own EER threshold {o['threshold']:.4g} "
                         f"(comparable to published OCIM tables): {pct(o['value'])}")
    if "files" in payload:
        lines += ["", f"report: {payload['files']['markdown']}"]
    return "\n".join(lines)


def _ece(summary: dict[str, Any]) -> str:
    """A split's ECE as ``0.0123`` (``n/a`` when its scores are not probabilities)."""
    e = (summary.get("calibration") or {}).get("ece")
    return "n/a" if e is None else f"{e:.4f}"


def _criterion_arg(text: str) -> str:
    try:
        return str(parse_criterion(text))
    except VitfasError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


EVAL_USAGE = ("vitfas eval BUNDLE MANIFEST [options]\n"
              "       vitfas eval --scores SCORES.csv MANIFEST [options]\n"
              "       vitfas eval --compare DIR [DIR ...] [--level frame|video] [--json]")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vitfas eval``."""
    p = subparsers.add_parser(
        "eval",
        usage=EVAL_USAGE,
        help="score a manifest with a model bundle (or evaluate a score file, or compare "
        "results); ISO/IEC 30107-3 metrics and a report",
        description="Score every dev/test row of MANIFEST with BUNDLE (or take the scores of "
        "SCORES.csv: columns path,score matched to the manifest rows by path), apply the "
        "operating threshold (the bundle's, or one chosen on the dev split) unchanged to "
        "test, and report APCER per attack type, BPCER, ACER, HTER, EER, AUC, BPCER20/100 at "
        "frame and video level, with ROC/DET curves and histograms. --compare prints the "
        "metrics.json of several result folders side by side as one Markdown table.",
    )
    p.add_argument("inputs", nargs="*", metavar="BUNDLE DATA",
                   help="model bundle folder and a manifest CSV (or a dataset folder as train "
                   "takes it, indexed into OUTPUT/manifest.csv); with --scores only a manifest")
    p.add_argument("--scores", metavar="SCORES.csv", default=None,
                   help="evaluate these scores (columns path,score[,frame][,fta]; score = "
                   "P(live) or any higher-is-more-live value) instead of running a bundle")
    p.add_argument("--missing", choices=("error", "fta"), default="error",
                   help="with --scores: a dev/test row without a score is an error (default) "
                   "or a failure to acquire")
    p.add_argument("--compare", nargs="+", metavar="DIR", default=None,
                   help="print one Markdown table of these result folders' metrics.json")
    p.add_argument("--level", choices=("frame", "video"), default="frame",
                   help="with --compare: which level to tabulate")
    p.add_argument("--dev-split", default="dev", help="split to choose thresholds on")
    p.add_argument("--test-split", default="test", help="split to report")
    p.add_argument("--criterion", default=None, type=_criterion_arg,
                   help="re-derive the threshold on the dev split: eer | apcer=0.05 | "
                   "bpcer=0.05 (default: the bundle's threshold; dev EER for --scores)")
    p.add_argument("--threshold", type=float, default=None, help="use this threshold")
    p.add_argument("--attack-fta", choices=("reject", "accept"), default="reject",
                   help="count an attack's failure to acquire as rejected (default) or accepted")
    p.add_argument("-o", "--output", default="eval_report", help="report folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="data loader workers")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run_eval_scores(
    scores_csv: str | Path,
    manifest: str | Path,
    *,
    dev_split: str = "dev",
    test_split: str = "test",
    criterion: str | None = None,
    threshold: float | None = None,
    attack_fta: str = "reject",
    missing: str = "error",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``vitfas eval --scores``: the report of a score file's scores on ``manifest``'s rows
    (matching rules: :mod:`vitfas.metrics.scorefile`); threshold as in
    :func:`evaluate_scored` (default: the dev EER)."""
    from vitfas.metrics.scorefile import scores_from_file

    sm, absent = scores_from_file(scores_csv, manifest, (dev_split, test_split), missing)
    source = {"bundle": None, "model_id": f"scores:{Path(scores_csv).name}",
              "scores": str(scores_csv), "rows_without_score": absent,
              "missing_score_rule": "error" if missing == "error" else "failure to acquire"}
    return evaluate_scored(sm, manifest, source=source, dev_split=dev_split,
                           test_split=test_split, criterion=criterion, threshold=threshold,
                           attack_fta=attack_fta, out_dir=out_dir)


def _usage_error(msg: str) -> int:
    import sys

    print(f"usage: {EVAL_USAGE}\nvitfas eval: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vitfas eval`` (under torchrun the rows are shared over the ranks)."""
    n = len(args.inputs)
    if args.compare is not None:
        if n or args.scores:
            return _usage_error("--compare takes result folders only (no BUNDLE, MANIFEST or "
                                "--scores)")
        from vitfas.metrics.compare import compare_markdown, compare_rows

        rows = compare_rows(args.compare, args.level)
        print(json.dumps(rows, indent=2) if args.json else compare_markdown(rows, args.level),
              end="\n" if args.json else "")
        return 0
    if args.scores is not None:
        if n != 1:
            return _usage_error(f"--scores SCORES.csv takes one MANIFEST, got {n} "
                                f"positional argument(s) {args.inputs}")
        payload = run_eval_scores(
            args.scores, args.inputs[0], dev_split=args.dev_split, test_split=args.test_split,
            criterion=args.criterion, threshold=args.threshold, attack_fta=args.attack_fta,
            missing=args.missing, out_dir=args.output)
        print(json.dumps(payload, indent=2) if args.json else format_summary(payload))
        return 0
    if n != 2:
        return _usage_error(f"expected BUNDLE MANIFEST, got {n} positional argument(s) "
                            f"{args.inputs}")
    info = init_distributed(args.device)
    device = str(info.device) if info.world_size > 1 else args.device
    payload = run_eval(
        args.inputs[0], args.inputs[1], dev_split=args.dev_split, test_split=args.test_split,
        criterion=args.criterion, threshold=args.threshold, attack_fta=args.attack_fta,
        out_dir=args.output, batch_size=args.batch_size, num_workers=args.workers,
        device=device, progress=not getattr(args, "quiet", False),
    )
    if info.rank != 0:
        return 0
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(format_summary(payload))
    return 0
