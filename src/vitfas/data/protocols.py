"""Evaluation protocols built from indexed manifests.

OCIM leave-one-out (cross-domain generalisation): train on three of OULU-NPU (O),
CASIA-FASD (C), Idiap Replay-Attack (I) and MSU-MFSD (M), test on the fourth. Following the
SSDG convention most OCIM papers inherit, a dataset's ``train`` and ``test`` parts are used
(its ``dev`` part is not): for sources they become ``train`` rows, for the target ``test``
rows. The sources' ``dev`` parts (Replay-Attack ``devel``, OULU ``Dev_files``) become the
``dev`` split (threshold/epoch selection on source data), unless disabled. Optionally
CelebA-Spoof joins as an extra source, and ``k`` target videos per class (taken from the
target's ``train`` part) are moved into training ("k-shot"); they are removed from the test.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from vitfas.errors import BadDataError

OCIM_DATASETS = {"O": "oulu-npu", "C": "casia-fasd", "I": "replay-attack", "M": "msu-mfsd"}
CELEBA = "celeba-spoof"


def ocim(
    rows: Iterable[Mapping[str, str]],
    target: str,
    sources: Sequence[str] | None = None,
    celeba: bool = False,
    k_shot: int = 0,
    seed: int = 0,
    source_splits: Sequence[str] = ("train", "test"),
    target_splits: Sequence[str] = ("train", "test"),
    source_dev: bool = True,
) -> list[dict[str, str]]:
    """Build one OCIM leave-one-out split.

    Args:
        rows: manifest rows of (at least) the four OCIM datasets (``dataset`` column
            ``oulu-npu``, ``casia-fasd``, ``replay-attack``, ``msu-mfsd``; plus
            ``celeba-spoof`` when ``celeba``).
        target: ``O``, ``C``, ``I`` or ``M``.
        sources: source letters (default: the other three).
        celeba: add CelebA-Spoof (all its rows) as an extra source.
        k_shot: target videos per class moved into training.
        seed: for the k-shot draw.
        source_splits, target_splits: original splits used for source training / target test.
        source_dev: sources' ``dev`` rows become split ``dev`` (else they are dropped).

    Returns:
        Rows with ``split`` rewritten (``train``/``dev``/``test``) and extra columns
        ``source_split`` (the original split), ``domain`` (``source``/``target``) and
        ``kshot`` (``1`` for k-shot rows).
    """
    t = target.upper()
    if t not in OCIM_DATASETS:
        raise BadDataError(f"ocim target: expected one of O, C, I, M, got {target!r}")
    src = [s.upper() for s in (sources or [k for k in OCIM_DATASETS if k != t])]
    bad = [s for s in src if s not in OCIM_DATASETS or s == t]
    if bad or not src:
        raise BadDataError(f"ocim sources: expected letters of OCIM other than the target {t}, "
                           f"got {list(sources or [])}")
    if k_shot < 0:
        raise BadDataError(f"k-shot: expected >= 0, got {k_shot}")
    rows = [dict(r) for r in rows]
    present = {r.get("dataset", "") for r in rows}
    needed = [OCIM_DATASETS[s] for s in [*src, t]] + ([CELEBA] if celeba else [])
    missing = [d for d in needed if d not in present]
    if missing:
        raise BadDataError(
            f"ocim: no rows of dataset(s) {missing} in the input manifests "
            f"(found {sorted(present)}); index them with `vitfas data index`")
    src_names = {OCIM_DATASETS[s] for s in src}
    tname = OCIM_DATASETS[t]
    out: list[dict[str, str]] = []
    target_rows: list[dict[str, str]] = []
    for r in rows:
        d, s = r.get("dataset", ""), r.get("split", "")
        if d in src_names or (celeba and d == CELEBA):
            if d == CELEBA or s in source_splits:
                new = "train"
            elif s == "dev" and source_dev:
                new = "dev"
            else:
                continue
            out.append({**r, "split": new, "source_split": s, "domain": "source", "kshot": ""})
        elif d == tname and s in (*target_splits, "train"):
            target_rows.append(r)
    shots: set[str] = set()
    if k_shot:
        pool = [r for r in target_rows if r.get("split") == "train"] or target_rows
        rng = random.Random(seed)
        for label in sorted({r["label"] for r in pool}):
            vids = sorted({r.get("video") or r["path"] for r in pool if r["label"] == label})
            if len(vids) < k_shot:
                raise BadDataError(f"ocim k-shot: target {tname} has only {len(vids)} "
                                   f"{label} video(s), {k_shot} requested")
            shots.update(rng.sample(vids, k_shot))
    for r in target_rows:
        vid = r.get("video") or r["path"]
        if vid in shots:
            out.append({**r, "split": "train", "source_split": r.get("split", ""),
                        "domain": "target", "kshot": "1"})
        elif r.get("split", "") in target_splits:
            out.append({**r, "split": "test", "source_split": r.get("split", ""),
                        "domain": "target", "kshot": ""})
    return out
