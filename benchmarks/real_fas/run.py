"""Build the real face anti-spoofing development set from the 15 fetched repositories.

    python benchmarks/real_fas/run.py --mirror DIR --out /work/real_fas [--seed 0]

``--mirror`` is the folder holding the fetched git directories (``owner+name/repo``, as
``fetch`` leaves them; default: ``$VITFAS_MIRROR``). Steps (each resumable; rerunning the
command redoes only what is missing):

1. **extract** the listed folders of each repository at its pinned commit
   (``git archive COMMIT PATHS | tar -x``) into ``OUT/raw/<owner>/``;
2. **index** each with ``--layout yolo`` (webcam frames: YOLO boxes, labels from the class
   ids ``0=spoof,1=live`` or from the Real/Fake folders) or ``--layout folder`` (face crops,
   CelebA-Spoof whole images);
3. **de-duplicate** by SHA-256 of the file bytes over all 15 repositories (the first copy in
   table order is kept; a content found under both labels is dropped everywhere; webcam
   frames without a YOLO box are dropped) -> ``OUT/index/<owner>.csv``;
4. **prepare** 128 px face crops: webcam frames cut at their YOLO box (``--boxes
   manifest``), face-crop sets taken whole (``--detector none``), CelebA-Spoof whole images
   through the dlib detector (its failures to acquire stay in the manifest as ``fta=1``)
   -> ``OUT/crops/<owner>/manifest.csv``;
5. **protocols** ``OUT/{intra,cross-camera,cross-dataset}/manifest.csv`` (see README.md).

Nothing here is committed: the photos' licences are unclear (development evaluation only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

from repos import CLASSES, CROSS_CAMERA_DEV, CROSS_CAMERA_TEST, REPOS, Repo  # noqa: E402

from vitfas.data.layouts import index_dataset  # noqa: E402
from vitfas.data.manifest import (  # noqa: E402
    read_manifest,
    relative_to_manifest,
    resolve_path,
    write_manifest,
)
from vitfas.data.prepare import prepare  # noqa: E402
from vitfas.faces import CropRecipe  # noqa: E402

PROTOCOLS = ("intra", "cross-camera", "cross-dataset")
CROP_SIZE = 128
TRAIN_CAP = 2000  # train images per protocol (deterministic subsample, stratified)
DEV_CAP = 1000  # dev images of the webcam protocols (per-epoch model selection stays cheap)
TEST_CAP = 2000  # test images of cross-camera (three held-out webcam repositories)


def git_dir(mirror: Path, repo: Repo) -> Path:
    """The fetched git directory of ``repo`` under ``mirror`` (bare, or a clone's .git)."""
    base = mirror / repo.mirror_dir / "repo"
    for cand in (base / ".git", base):
        if (cand / "HEAD").is_file():
            return cand
    raise SystemExit(f"{base}: no git directory for {repo.name}; fetch it first "
                     f"(github:{repo.name})")


def extract(mirror: Path, repo: Repo, raw: Path) -> Path:
    """Extract ``repo.paths`` (and ``prefix_paths``) at ``repo.commit`` into
    ``raw/<owner>``; returns that folder. Skipped when done for the same commit."""
    dest = raw / repo.dataset
    stamp = dest / ".extracted"
    gd = git_dir(mirror, repo)
    full = subprocess.run(["git", "--git-dir", str(gd), "rev-parse", "--verify",
                           f"{repo.commit}^{{commit}}"], capture_output=True, text=True)
    if full.returncode != 0:
        raise SystemExit(f"{gd}: commit {repo.commit} of {repo.name} not found "
                         f"({full.stderr.strip()})")
    sha = full.stdout.strip()
    if stamp.is_file() and stamp.read_text().strip() == sha:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    paths = [*repo.paths, *repo.prefix_paths]
    missing = write_blobs(gd, sha, paths, dest)
    if missing:
        print(f"{repo.name}: {len(missing)} file(s) absent from the fetched git directory "
              f"(skipped), e.g. {missing[0]}", flush=True)
    for p in repo.prefix_paths:  # frames labelled by file name: sort into live/ and spoof/
        src = dest / p
        for f in sorted(src.rglob("*")):
            m = re.match(r"(live|spoof)_", f.name, re.I)
            if not f.is_file() or not m:
                continue
            to = dest / "named" / m[1].lower() / f.relative_to(src).as_posix().replace(
                "/", "__")
            to.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, to)
        shutil.rmtree(src)
    stamp.write_text(sha + "\n")
    return dest


KEEP = re.compile(r"\.(jpe?g|png|bmp|webp|txt)$", re.I)


def write_blobs(gd: Path, commit: str, paths: list[str], dest: Path) -> list[str]:
    """Write every image and ``.txt`` file under ``paths`` at ``commit`` into ``dest`` with
    ``git cat-file --batch`` (one process). Returns the paths whose blobs are absent."""
    ls = subprocess.run(["git", "--git-dir", str(gd), "ls-tree", "-r", "-z", commit, "--",
                         *paths], capture_output=True, check=True)
    entries = []
    for item in ls.stdout.split(b"\0"):
        if not item:
            continue
        meta, name = item.split(b"\t", 1)
        mode, typ, oid = meta.split()
        path = name.decode("utf-8", "surrogateescape")
        if typ == b"blob" and mode != b"120000" and KEEP.search(path):
            entries.append((oid.decode(), path))
    proc = subprocess.Popen(["git", "--git-dir", str(gd), "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    feed = "".join(f"{oid}\n" for oid, _ in entries).encode()

    def _feed() -> None:  # in a thread: cat-file's output must be read while it is fed
        assert proc.stdin is not None
        proc.stdin.write(feed)
        proc.stdin.close()

    feeder = threading.Thread(target=_feed, daemon=True)
    feeder.start()
    missing = []
    for _oid, path in entries:
        head = proc.stdout.readline().split()
        if len(head) < 3 or head[1] == b"missing":
            missing.append(path)
            continue
        data = proc.stdout.read(int(head[2]))
        proc.stdout.read(1)  # the newline after each object
        f = dest / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    feeder.join()
    proc.wait()
    return missing


def index_repo(repo: Repo, dest: Path) -> list[dict[str, str]]:
    """Index one extracted repository (absolute paths)."""
    rows: list[dict[str, str]] = []
    if repo.kind == "webcam":
        roots = sorted({(dest / p).parent for p in repo.paths})
        for r in roots:
            if repo.label_from == "classes":
                rows += index_dataset("yolo", r, check="none", dataset=repo.dataset,
                                      classes=CLASSES)
            else:
                rows += index_dataset("yolo", r, check="none", dataset=repo.dataset,
                                      label_from="folder")
    else:
        roots = sorted({(dest / p).parent for p in repo.paths})
        if repo.prefix_paths:
            roots.append(dest / "named")
        for r in roots:
            rows += index_dataset("folder", r, check="none", dataset=repo.dataset)
    for r in rows:
        r["split"] = ""  # the protocols assign splits
        r["repo"] = repo.name
        r["commit"] = repo.commit
        r["kind"] = repo.kind
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dedup(per_repo: dict[str, list[dict[str, str]]]) -> tuple[
        dict[str, list[dict[str, str]]], dict[str, dict[str, int]]]:
    """Keep the first copy of every content (repos in table order, paths sorted); drop a
    content seen under both labels everywhere, and webcam frames without a box."""
    labels: dict[str, set[str]] = {}
    for rows in per_repo.values():
        for r in rows:
            r["sha256"] = sha256(Path(r["path"]))
            labels.setdefault(r["sha256"], set()).add(r["label"])
    seen: dict[str, str] = {}
    kept: dict[str, list[dict[str, str]]] = {}
    stats: dict[str, dict[str, int]] = {}
    for ds, rows in per_repo.items():
        c = Counter()
        out = []
        for r in sorted(rows, key=lambda r: r["path"]):
            c["files"] += 1
            h = r["sha256"]
            if len(labels[h]) > 1:
                c["label_conflict"] += 1
                continue
            if h in seen:
                c["dup_same_repo" if seen[h] == ds else "dup_other_repo"] += 1
                continue
            seen[h] = ds
            if r["kind"] == "webcam" and not r.get("face_box_rel"):
                c["no_box"] += 1
                continue
            c[f"kept_{r['label']}"] += 1
            out.append(r)
        kept[ds] = out
        stats[ds] = dict(c)
    return kept, stats


def recipe_for(repo: Repo) -> tuple[CropRecipe, str]:
    """Crop recipe and box source per kind of image."""
    if repo.kind == "webcam":
        return CropRecipe(detector="none", scale=1.0, size=CROP_SIZE), "manifest"
    if repo.kind == "crop":
        return CropRecipe(detector="none", scale=1.0, size=CROP_SIZE), "detect"
    return CropRecipe(detector="dlib", scale=1.0, size=CROP_SIZE), "detect"


# ------------------------------------------------------------------ protocols
def _u(seed: int, *key: str) -> float:
    """A deterministic uniform number in [0, 1) for ``key``."""
    h = hashlib.sha256("|".join([str(seed), *key]).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def group_of(r: dict[str, str]) -> str:
    """Images that may come from one capture (one video): one group, one split.

    nuredinali's frames are named ``<clip> (<k>).png`` (clips 100, 200, 300) or ``<k>.png``
    (one more sequence); elsewhere no clip or subject id is known and each image is its
    own group."""
    stem = Path(r.get("video") or r["path"]).name
    if r["dataset"].startswith("nuredinali"):
        m = re.match(r"(\d+) \(\d+\)$", stem)
        return f"{r['dataset']}/{r['label']}/" + (f"clip{m[1]}" if m else "plain")
    return f"{r['dataset']}/{r.get('video') or r['path']}"


def group_split(rows: list[dict[str, str]], seed: int,
                fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
                ) -> dict[str, list[dict[str, str]]]:
    """Group-disjoint train/dev/test split, per (dataset, label): groups are taken in a
    seeded hash order and each goes to the split furthest below its target share."""
    names = ("train", "dev", "test")
    out: dict[str, list[dict[str, str]]] = {n: [] for n in names}
    strata: dict[tuple[str, str], dict[str, list[dict[str, str]]]] = {}
    for r in rows:
        strata.setdefault((r["dataset"], r["label"]), {}).setdefault(group_of(r), []).append(r)
    for key in sorted(strata):
        groups = strata[key]
        total = sum(len(g) for g in groups.values())
        have = dict.fromkeys(names, 0)
        for g in sorted(groups, key=lambda g: _u(seed, g)):
            pick = max(names, key=lambda n: fractions[names.index(n)] * total - have[n])
            have[pick] += len(groups[g])
            out[pick] += groups[g]
    return out


def subsample(rows: list[dict[str, str]], cap: int, seed: int) -> list[dict[str, str]]:
    """At most ``cap`` rows, each (dataset, label) stratum cut in proportion, drawn with
    ``random.Random(seed)`` from rows in path order; rows keep their order."""
    if len(rows) <= cap:
        return rows
    strata: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        strata.setdefault((r["dataset"], r["label"]), []).append(i)
    rng = random.Random(seed)
    keep: set[int] = set()
    for k in sorted(strata):
        idx = strata[k]
        n = round(cap * len(idx) / len(rows))
        keep.update(rng.sample(idx, min(n, len(idx))))
    return [r for i, r in enumerate(rows) if i in keep]


def build_protocols(crops: dict[str, list[dict[str, str]]], seed: int
                    ) -> dict[str, list[dict[str, str]]]:
    """The three protocols from one row per image (``dataset`` = repository owner)."""
    kind = {r.dataset: r.kind for r in REPOS}
    face_sets = [d for d in crops if kind[d] in ("crop", "whole")]
    webcam = [d for d in crops if kind[d] == "webcam"]
    out: dict[str, list[dict[str, str]]] = {}

    intra = group_split([r for d in face_sets for r in crops[d]], seed)
    intra["train"] = subsample(intra["train"], TRAIN_CAP, seed)
    out["intra"] = [{**r, "split": s} for s in ("train", "dev", "test") for r in intra[s]]

    cam_train = [r for d in webcam if d not in (*CROSS_CAMERA_DEV, *CROSS_CAMERA_TEST)
                 for r in crops[d]]
    cam_dev = subsample([r for d in CROSS_CAMERA_DEV for r in crops[d]], DEV_CAP, seed)
    cam_test = subsample([r for d in CROSS_CAMERA_TEST for r in crops[d]], TEST_CAP, seed)
    out["cross-camera"] = ([{**r, "split": "train"} for r in subsample(cam_train, TRAIN_CAP,
                                                                        seed)]
                           + [{**r, "split": "dev"} for r in cam_dev]
                           + [{**r, "split": "test"} for r in cam_test])

    xd_train = [r for d in webcam if d not in CROSS_CAMERA_DEV for r in crops[d]]
    out["cross-dataset"] = ([{**r, "split": "train"} for r in subsample(xd_train, TRAIN_CAP,
                                                                         seed)]
                            + [{**r, "split": "dev"} for r in cam_dev]
                            + [{**r, "split": "test"} for d in face_sets for r in crops[d]])
    return out


def counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    c: dict[str, dict[str, int]] = {}
    for r in rows:
        s = c.setdefault(r["split"], {})
        key = r["label"] + (" fta" if r.get("fta") == "1" else "")
        s[key] = s.get(key, 0) + 1
    return c


def markdown(summary: dict) -> str:
    """The README tables: per repository and per protocol split."""
    lines = ["| repository @ commit | kind | image files | duplicates (same repo / other "
             "repo) | label conflicts | no box | kept live / spoof | crops | FTA |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _ds, r in summary["repos"].items():
        lines.append(
            f"| `{r['repo']}` @ {r['commit']} | {r['kind']} | {r.get('files', 0)} | "
            f"{r.get('dup_same_repo', 0)} / {r.get('dup_other_repo', 0)} | "
            f"{r.get('label_conflict', 0)} | {r.get('no_box', 0)} | "
            f"{r.get('kept_live', 0)} / {r.get('kept_spoof', 0)} | {r.get('crops', 0)} | "
            f"{r.get('fta', 0)} |")
    lines += ["", "| protocol | split | live | spoof | FTA rows | repositories |",
              "|---|---|---:|---:|---:|---|"]
    for name, p in summary["protocols"].items():
        for split in ("train", "dev", "test"):
            c = p["counts"].get(split, {})
            repos = sorted(k.split(":", 1)[1] for k in p["datasets"]
                           if k.startswith(split + ":"))
            fta = sum(v for k, v in c.items() if k.endswith(" fta"))
            lines.append(f"| {name} | {split} | {c.get('live', 0)} | {c.get('spoof', 0)} | "
                         f"{fta} | {', '.join(repos)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, default=os.environ.get("VITFAS_MIRROR"),
                    help="folder of fetched git directories (owner+name/repo); default "
                    "$VITFAS_MIRROR")
    ap.add_argument("--out", type=Path, required=True, help="output folder (not in a repo)")
    ap.add_argument("--seed", type=int, default=0, help="split and subsample seed")
    ap.add_argument("--workers", type=int, default=1, help="prepare processes")
    ap.add_argument("--summary-only", action="store_true",
                    help="print the Markdown tables of an earlier run's summary.json")
    args = ap.parse_args(argv)
    if args.summary_only:
        print(markdown(json.loads((args.out / "summary.json").read_text())))
        return 0
    if args.mirror is None:
        ap.error("--mirror (or $VITFAS_MIRROR) is required")
    out: Path = args.out.resolve()
    t0 = time.time()
    per_repo: dict[str, list[dict[str, str]]] = {}
    for repo in REPOS:
        dest = extract(args.mirror, repo, out / "raw")
        per_repo[repo.dataset] = index_repo(repo, dest)
        print(f"[{time.time() - t0:6.0f}s] {repo.dataset}: {len(per_repo[repo.dataset])} "
              f"images indexed", flush=True)
    kept, stats = dedup(per_repo)
    # splits are drawn on the de-duplicated images; only the images some protocol uses are
    # cropped (each image gives one crop row, or one fta=1 row when no face is found)
    protocols = build_protocols(kept, args.seed)
    used = {r["path"] for rows in protocols.values() for r in rows}
    crop_of: dict[str, dict[str, str]] = {}
    for repo in REPOS:
        ds = repo.dataset
        every = out / "index" / f"{ds}.all.csv"
        write_manifest(every, [{**r, "path": relative_to_manifest(r["path"], every)}
                               for r in kept[ds]])
        man = out / "index" / f"{ds}.csv"
        write_manifest(man, [{**r, "path": relative_to_manifest(r["path"], man)}
                             for r in kept[ds] if r["path"] in used])
        recipe, boxes = recipe_for(repo)
        s = prepare(man, out / "crops" / ds, recipe=recipe, boxes=boxes, frames=1,
                    workers=args.workers, progress=False)
        stats[ds].update(cropped=s["total"]["inputs"], crops=s["total"]["crops"],
                         fta=s["total"]["no_face_inputs"], unreadable=s["total"]["unreadable"])
        cm = Path(s["manifest"])
        for r in read_manifest(cm):
            src = str(resolve_path(cm, {"path": r["source_path"]}))
            crop_of[src] = {**r, "path": str(resolve_path(cm, r)), "source_path": src}
        print(f"[{time.time() - t0:6.0f}s] {ds}: {stats[ds]}", flush=True)
    summary: dict[str, object] = {"seed": args.seed, "crop_size": CROP_SIZE,
                                  "train_cap": TRAIN_CAP, "dev_cap": DEV_CAP,
                                  "test_cap": TEST_CAP,
                                  "repos": {r.dataset: {"repo": r.name, "commit": r.commit,
                                                        "kind": r.kind, **stats[r.dataset]}
                                            for r in REPOS},
                                  "protocols": {}}
    for name, index_rows in protocols.items():
        rows = [{**crop_of[str(Path(r["path"]).resolve())], "split": r["split"]}
                for r in index_rows]
        man = out / name / "manifest.csv"
        write_manifest(man, [{**r, "path": relative_to_manifest(r["path"], man),
                              "source_path": relative_to_manifest(r["source_path"], man)}
                             for r in rows])
        summary["protocols"][name] = {"manifest": str(man), "rows": len(rows),  # type: ignore[index]
                                      "counts": counts(rows),
                                      "datasets": dict(Counter(f"{r['split']}:{r['dataset']}"
                                                               for r in rows))}
        print(f"wrote {man}: {len(rows)} rows {counts(rows)}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary) + "\n")
    print(f"done in {time.time() - t0:.0f}s; summary in {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
