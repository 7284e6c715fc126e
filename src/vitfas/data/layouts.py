"""Dataset indexers: walk a dataset's folder tree and return manifest rows.

Each indexer knows one dataset's official file and folder naming and returns rows with
absolute paths (``vitfas data index`` makes them relative to the manifest). Rows are one per
video (``frame`` empty; ``vitfas data prepare`` samples frames) or one per image.

Layouts (``LAYOUTS``): ``folder``, ``imagefolder``, ``casia-fasd``, ``replay-attack``,
``msu-mfsd``, ``oulu-npu``, ``celeba-spoof``, ``yolo``. Conventions are documented in docs/data.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from vitfas.data.io import image_header, is_image_file, load_image
from vitfas.data.manifest import COLUMNS
from vitfas.data.video import _open, is_video_file, sample_frames
from vitfas.errors import BadDataError, BadImageError, BadVideoError, VitfasError

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "dev", "devel": "dev", "val": "dev", "valid": "dev", "validation": "dev",
    "test": "test", "testing": "test",
}
LIVE_DIRS = {"live": "live", "real": "live", "genuine": "live"}
SPOOF_DIRS = {"spoof": "spoof", "attack": "spoof", "fake": "spoof"}


def _row(path: Path, label: str, attack_type: str, dataset: str, subject: str = "",
         video: str = "", split: str = "", **extra: str) -> dict[str, str]:
    r = dict.fromkeys(COLUMNS, "")
    r.update(path=str(path), label=label, attack_type=attack_type, dataset=dataset,
             subject=subject, video=video, split=split)
    r.update({k: str(v) for k, v in extra.items()})
    return r


def _media(root: Path, skipped: list[str] | None = None) -> list[Path]:
    """Image and video files under ``root`` (hidden ones ignored), sorted; other files are
    appended to ``skipped`` when given."""
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if is_image_file(p) or is_video_file(p):
            out.append(p)
        elif skipped is not None:
            skipped.append(str(p))
    return out


def _report_skipped(what: str, skipped: list[str]) -> None:
    if skipped:
        exts = sorted({Path(p).suffix.lower() or "(no extension)" for p in skipped})
        log.warning("%s: skipped %d file(s) that are neither images nor videos (%s), e.g. %s",
                    what, len(skipped), ", ".join(exts), skipped[0])


def _need_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise BadDataError(f"{root}: {what} root folder not found")
    if not root.is_dir():
        raise BadDataError(f"{root}: expected the {what} root folder, found a file")
    return root


def _split_roots(root: Path) -> list[tuple[str, Path]]:
    """``[(split, folder)]``: the split sub-folders when present, else ``[("", root)]``."""
    subs = [(SPLIT_ALIASES[d.name.lower()], d) for d in sorted(root.iterdir())
            if d.is_dir() and d.name.lower() in SPLIT_ALIASES]
    return subs or [("", root)]


def _video_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


# ---------------------------------------------------------------- generic layouts
def index_folder(root: Path, dataset: str | None = None, skipped: list[str] | None = None,
                 **_: Any) -> list[dict[str, str]]:
    """``ROOT/[train|dev|test/]live/**`` and ``ROOT/[split/]spoof/<attack_type>/**``.

    Files directly in ``spoof/`` get the generic attack type ``attack``. ``real``/``genuine`` are
    accepted for ``live``, ``attack``/``fake`` for ``spoof``. Files that are neither images
    nor videos are logged and appended to ``skipped``.
    """
    skipped = [] if skipped is None else skipped
    root = _need_dir(root, "folder-tree")
    name = dataset or root.name
    rows = []
    for split, sroot in _split_roots(root):
        kinds = {d.name: d for d in sorted(sroot.iterdir()) if d.is_dir()}
        known = {k: v for k, v in kinds.items()
                 if k.lower() in LIVE_DIRS or k.lower() in SPOOF_DIRS}
        if not known:
            raise BadDataError(
                f"{sroot}: expected live/ and spoof/<attack_type>/ sub-folders, "
                f"found {sorted(kinds) or 'none'}"
            )
        for k, d in known.items():
            label = LIVE_DIRS.get(k.lower()) or SPOOF_DIRS[k.lower()]
            for f in _media(d, skipped):
                rel = f.relative_to(d)
                if label == "live":
                    attack = "none"
                else:
                    attack = rel.parts[0] if len(rel.parts) > 1 else "attack"
                rows.append(_row(f, label, attack, name, video=_video_id(f, root), split=split))
    _report_skipped(f"{root}", skipped)
    if not rows:
        raise BadDataError(f"{root}: no images or videos found under live/ or spoof/")
    return rows


def index_imagefolder(root: Path, dataset: str | None = None,
                      skipped: list[str] | None = None, **_: Any) -> list[dict[str, str]]:
    """``ROOT/[train|dev|test/]<class>/**``: any class names (generic classification).
    Files that are neither images nor videos are logged and appended to ``skipped``."""
    skipped = [] if skipped is None else skipped
    root = _need_dir(root, "image-folder")
    name = dataset or root.name
    rows = []
    for split, sroot in _split_roots(root):
        for d in sorted(p for p in sroot.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in _media(d, skipped):
                rows.append(_row(f, d.name, "", name, video=_video_id(f, root), split=split))
    _report_skipped(f"{root}", skipped)
    if not rows:
        raise BadDataError(f"{root}: no class folders with images found")
    return rows


# ---------------------------------------------------------------- CASIA-FASD
CASIA_TYPES = {
    "1": ("live", "none", "", "low"), "2": ("live", "none", "", "normal"),
    "HR_1": ("live", "none", "", "high"),
    "3": ("spoof", "print", "warped_photo", "low"),
    "4": ("spoof", "print", "warped_photo", "normal"),
    "HR_2": ("spoof", "print", "warped_photo", "high"),
    "5": ("spoof", "print", "cut_photo", "low"), "6": ("spoof", "print", "cut_photo", "normal"),
    "HR_3": ("spoof", "print", "cut_photo", "high"),
    "7": ("spoof", "replay", "video", "low"), "8": ("spoof", "replay", "video", "normal"),
    "HR_4": ("spoof", "replay", "video", "high"),
}


def index_casia(root: Path, **_: Any) -> list[dict[str, str]]:
    """CASIA-FASD: ``train_release/<subject>/<n>.avi`` and ``test_release/...`` with
    ``1, 2, HR_1`` live; ``3, 4, HR_2`` warped photo; ``5, 6, HR_3`` cut photo;
    ``7, 8, HR_4`` video replay (odd numbers low quality, even normal, HR high)."""
    root = _need_dir(root, "CASIA-FASD")
    rows, skipped = [], 0
    split_dirs = sorted(p for p in [root, *root.rglob("*")] if p.is_dir()
                        and p.name in ("train_release", "test_release"))
    if not split_dirs:
        raise BadDataError(f"{root}: no train_release/ or test_release/ folder (CASIA-FASD)")
    for sd in split_dirs:
        split = "train" if sd.name == "train_release" else "test"
        for f in _media(sd):
            rel = f.relative_to(sd)
            if not is_video_file(f) or len(rel.parts) != 2 or f.stem not in CASIA_TYPES:
                skipped += 1
                continue
            label, attack, detail, quality = CASIA_TYPES[f.stem]
            subject = rel.parts[0]
            rows.append(_row(f, label, attack, "casia-fasd", subject=subject,
                             video=f"{sd.name}/{subject}/{f.stem}", split=split,
                             attack_detail=detail, quality=quality))
    if skipped:
        log.warning("casia-fasd: skipped %d files not named <subject>/<1-8|HR_1-4>.<video>",
                    skipped)
    if not rows:
        raise BadDataError(f"{root}: no CASIA-FASD videos (<subject>/1.avi ... HR_4.avi) found")
    return rows


# ---------------------------------------------------------------- Replay-Attack
_RA_REAL = re.compile(
    r"^client(\d+)_session(\d+)_webcam_authenticate_(adverse|controlled)_(\d+)$")
_RA_ATTACK = re.compile(
    r"^attack_(print|mobile|highdef)_client(\d+)_session(\d+)_(highdef|mobile)_(photo|video)_"
    r"(adverse|controlled)$")


def index_replay(root: Path, **_: Any) -> list[dict[str, str]]:
    """Idiap Replay-Attack: ``{train,devel,test}/real/client001_session01_webcam_
    authenticate_adverse_1.mov`` and ``{train,devel,test}/attack/{fixed,hand}/
    attack_{print,mobile,highdef}_client001_session01_{highdef,mobile}_{photo,video}_
    {adverse,controlled}.mov``. ``devel`` becomes split ``dev``; ``enroll/`` is skipped.
    Printed photos are attack type ``print``; photos or videos shown on a phone (mobile) or
    tablet (highdef) are ``replay``."""
    root = _need_dir(root, "Replay-Attack")
    rows, skipped = [], 0
    for f in _media(root):
        parts = [p.lower() for p in f.relative_to(root).parts]
        if not is_video_file(f) or "enroll" in parts:
            continue
        kind = next((i for i, p in enumerate(parts) if p in ("real", "attack")), None)
        if kind is None or kind == 0 or parts[kind - 1] not in ("train", "devel", "test"):
            skipped += 1
            continue
        split = SPLIT_ALIASES[parts[kind - 1]]
        if parts[kind] == "real":
            m = _RA_REAL.match(f.stem)
            if not m:
                skipped += 1
                continue
            rows.append(_row(f, "live", "none", "replay-attack", subject=f"client{m[1]}",
                             video=f.stem, split=split, light=m[3], support=""))
        else:
            m = _RA_ATTACK.match(f.stem)
            support = parts[kind + 1] if len(parts) > kind + 2 else ""
            if not m or support not in ("fixed", "hand"):
                skipped += 1
                continue
            attack = "print" if m[1] == "print" else "replay"
            detail = f"{m[1]}_{m[5]}"  # print_photo, mobile_photo, highdef_video, ...
            rows.append(_row(f, "spoof", attack, "replay-attack", subject=f"client{m[2]}",
                             video=f"{support}/{f.stem}", split=split, attack_detail=detail,
                             light=m[6], support=support))
    if skipped:
        log.warning("replay-attack: skipped %d files with unexpected names or folders", skipped)
    if not rows:
        raise BadDataError(
            f"{root}: no Replay-Attack videos ({{train,devel,test}}/real|attack/...) found")
    return rows


# ---------------------------------------------------------------- MSU-MFSD
_MSU = re.compile(
    r"^(real|attack)_client(\d+)_(android|laptop)_SD_(?:(ipad_video|iphone_video|printed_photo)_)?"
    r"scene(\d+)$")


def _read_ids(path: Path) -> set[int]:
    try:
        return {int(t) for t in re.findall(r"\d+", path.read_text())}
    except OSError as exc:
        raise BadDataError(f"{path}: cannot read subject list ({exc})") from exc


def index_msu(root: Path, **_: Any) -> list[dict[str, str]]:
    """MSU-MFSD: ``scene01/real/real_client002_android_SD_scene01.mp4``,
    ``scene01/attack/attack_client002_laptop_SD_{ipad_video,iphone_video,printed_photo}_
    scene01.mov``; the split comes from ``train_sub_list.txt`` / ``test_sub_list.txt``
    (client ids)."""
    root = _need_dir(root, "MSU-MFSD")
    lists = {}
    for name in ("train_sub_list.txt", "test_sub_list.txt"):
        found = sorted(root.rglob(name))
        if not found:
            raise BadDataError(f"{root}: {name} not found (MSU-MFSD subject split)")
        lists[name.split("_")[0]] = (found[0], _read_ids(found[0]))
    train_ids, test_ids = lists["train"][1], lists["test"][1]
    if train_ids & test_ids:
        raise BadDataError(f"{lists['train'][0]}: clients {sorted(train_ids & test_ids)} are "
                           f"also in {lists['test'][0]}")
    rows, skipped = [], 0
    for f in _media(root):
        m = _MSU.match(f.stem)
        if not is_video_file(f) or not m:
            skipped += 1
            continue
        cid = int(m[2])
        if cid in train_ids:
            split = "train"
        elif cid in test_ids:
            split = "test"
        else:
            raise BadDataError(f"{f}: client {cid} is in neither {lists['train'][0].name} nor "
                               f"{lists['test'][0].name}")
        if m[1] == "real":
            label, attack, detail = "live", "none", ""
        else:
            label = "spoof"
            attack = "print" if m[4] == "printed_photo" else "replay"
            detail = m[4] or ""
        rows.append(_row(f, label, attack, "msu-mfsd", subject=f"client{m[2]}", video=f.stem,
                         split=split, attack_detail=detail, device=m[3]))
    if skipped:
        log.warning("msu-mfsd: skipped %d files with unexpected names", skipped)
    if not rows:
        raise BadDataError(f"{root}: no MSU-MFSD videos (real_client*/attack_client*) found")
    return rows


# ---------------------------------------------------------------- OULU-NPU
_OULU = re.compile(r"^([1-6])_([1-3])_(\d{2})_([1-5])$")
OULU_TYPES = {
    "1": ("live", "none", ""), "2": ("spoof", "print", "printer_1"),
    "3": ("spoof", "print", "printer_2"), "4": ("spoof", "replay", "display_1"),
    "5": ("spoof", "replay", "display_2"),
}
OULU_FOLDS = {1: None, 2: None, 3: 6, 4: 6}


def _oulu_videos(root: Path) -> dict[tuple[str, str], Path]:
    out: dict[tuple[str, str], Path] = {}
    for f in _media(root):
        if not is_video_file(f) or not _OULU.match(f.stem):
            continue
        folder = next((p.lower() for p in reversed(f.relative_to(root).parts[:-1])
                       if p.lower() in ("train_files", "dev_files", "test_files")), None)
        if folder is None:
            continue
        out[(folder.split("_")[0], f.stem)] = f
    return out


def _oulu_row(f: Path, split: str, **extra: str) -> dict[str, str]:
    phone, session, user, kind = _OULU.match(f.stem).groups()  # type: ignore[union-attr]
    label, attack, detail = OULU_TYPES[kind]
    return _row(f, label, attack, "oulu-npu", subject=user, video=f.stem, split=split,
                attack_detail=detail, phone=phone, session=session, **extra)


def index_oulu(root: Path, protocol: int | None = None, fold: int | None = None,
               **_: Any) -> list[dict[str, str]]:
    """OULU-NPU: ``{Train,Dev,Test}_files/<Phone>_<Session>_<User>_<File>.avi`` with file
    1 live, 2-3 print (two printers), 4-5 replay (two displays).

    Without ``protocol`` every video is indexed with its folder's split. With ``protocol``
    (1-4; protocols 3 and 4 need ``fold`` 1-6) rows come from ``Protocols/Protocol_N/
    {Train,Dev,Test}[_fold].txt`` (lines ``+1,1_1_01_1``: +1 live, -1 print, -2 replay).
    """
    root = _need_dir(root, "OULU-NPU")
    videos = _oulu_videos(root)
    if not videos:
        raise BadDataError(f"{root}: no OULU-NPU videos in Train_files/Dev_files/Test_files")
    if protocol is None:
        if fold is not None:
            raise BadDataError("oulu-npu: --fold needs --protocol 3 or 4")
        return [_oulu_row(f, split) for (split, _), f in sorted(videos.items(),
                                                                key=lambda kv: str(kv[1]))]
    if protocol not in OULU_FOLDS:
        raise BadDataError(f"oulu-npu: protocol must be 1, 2, 3 or 4, got {protocol}")
    nfolds = OULU_FOLDS[protocol]
    if nfolds is None and fold is not None:
        raise BadDataError(f"oulu-npu: protocol {protocol} has no folds (got --fold {fold})")
    if nfolds is not None and (fold is None or not 1 <= fold <= nfolds):
        raise BadDataError(f"oulu-npu: protocol {protocol} needs --fold 1-{nfolds}, got {fold}")
    pdirs = sorted(d for d in root.rglob(f"Protocol_{protocol}") if d.is_dir())
    if not pdirs:
        raise BadDataError(f"{root}: Protocols/Protocol_{protocol}/ not found (OULU-NPU)")
    rows = []
    for split_file, split in (("Train", "train"), ("Dev", "dev"), ("Test", "test")):
        name = f"{split_file}.txt" if fold is None else f"{split_file}_{fold}.txt"
        pf = pdirs[0] / name
        if not pf.is_file():
            raise BadDataError(f"{pf}: protocol file not found")
        for ln, line in enumerate(pf.read_text().splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = [s.strip() for s in line.split(",")]
            if len(parts) != 2 or not re.fullmatch(r"[+-]?\d+", parts[0]) or not _OULU.match(
                    parts[1]):
                raise BadDataError(f"{pf}:{ln}: expected '<+1|-1|-2>,<phone>_<session>_<user>"
                                   f"_<file>', found {line!r}")
            f = videos.get((split, parts[1]))
            if f is None:
                raise BadDataError(f"{pf}:{ln}: video {parts[1]} not found in "
                                   f"{split_file}_files/")
            row = _oulu_row(f, split, protocol=str(protocol), fold="" if fold is None else
                            str(fold))
            if (int(parts[0]) > 0) != (row["label"] == "live"):
                raise BadDataError(f"{pf}:{ln}: label {parts[0]} contradicts file type "
                                   f"{parts[1][-1]} of {parts[1]}")
            rows.append(row)
    return rows


# ---------------------------------------------------------------- CelebA-Spoof
#: CelebA-Spoof spoof types (label index 40): name, coarse attack type.
CELEBA_SPOOF_TYPES = {
    0: ("live", "none"), 1: ("photo", "print"), 2: ("poster", "print"), 3: ("a4", "print"),
    4: ("face_mask", "paper_mask"), 5: ("upper_body_mask", "paper_mask"),
    6: ("region_mask", "paper_mask"), 7: ("pc", "replay"), 8: ("pad", "replay"),
    9: ("phone", "replay"), 10: ("3d_mask", "mask_3d"),
}


def _celeba_box(img: Path) -> str:
    bb = img.with_name(img.stem + "_BB.txt")
    if not bb.is_file():
        return ""
    vals = bb.read_text().split()
    if len(vals) < 4:
        raise BadDataError(f"{bb}: expected 'x y w h score', found {' '.join(vals)!r}")
    x, y, w, h = (float(v) for v in vals[:4])
    # CelebA-Spoof boxes are given for the image resized to 224 x 224
    return " ".join(f"{v / 224:.5f}" for v in (x, y, x + w, y + h))


def index_celeba(root: Path, **_: Any) -> list[dict[str, str]]:
    """CelebA-Spoof: ``Data/{train,test}/<subject>/{live,spoof}/<id>.{jpg,png}``, labels
    from ``metas/intra_test/{train,test}_label.json`` (index 40 = spoof type), boxes from
    ``<id>_BB.txt`` (``x y w h score`` in a 224 x 224 frame), stored as ``face_box_rel``
    ``x0 y0 x1 y1`` fractions of the image size."""
    root = _need_dir(root, "CelebA-Spoof")
    data_dirs = sorted(d for d in [root, *root.glob("*"), *root.glob("*/*")]
                       if d.is_dir() and d.name == "Data")
    if not data_dirs:
        raise BadDataError(f"{root}: no Data/ folder (CelebA-Spoof)")
    base = data_dirs[0].parent
    types: dict[str, int] = {}
    for split in ("train", "test"):
        jf = base / "metas" / "intra_test" / f"{split}_label.json"
        if jf.is_file():
            try:
                labels = json.loads(jf.read_text())
            except json.JSONDecodeError as exc:
                raise BadDataError(f"{jf}: not valid JSON ({exc})") from exc
            for k, v in labels.items():
                if not isinstance(v, list) or len(v) < 41:
                    raise BadDataError(f"{jf}: entry {k!r}: expected a list of 44 labels")
                types[k] = int(v[40])
    rows = []
    missing_labels = 0
    for split in ("train", "test"):
        sd = base / "Data" / split
        if not sd.is_dir():
            continue
        for f in _media(sd):
            rel = f.relative_to(sd).parts
            if len(rel) != 3 or rel[1] not in ("live", "spoof") or not is_image_file(f):
                continue
            key = f.relative_to(base).as_posix()
            label = rel[1]
            stype = types.get(key)
            if stype is None:
                missing_labels += 1
                attack, detail = ("none", "") if label == "live" else ("unknown", "")
            else:
                if stype not in CELEBA_SPOOF_TYPES:
                    raise BadDataError(f"{key}: unknown spoof type {stype} (expected 0-10)")
                detail, attack = CELEBA_SPOOF_TYPES[stype]
                if (stype == 0) != (label == "live"):
                    raise BadDataError(f"{key}: spoof type {stype} contradicts folder {label}/")
                detail = "" if stype == 0 else detail
            rows.append(_row(f, label, attack, "celeba-spoof", subject=rel[0],
                             video=key.rsplit(".", 1)[0], split=split, attack_detail=detail,
                             face_box_rel=_celeba_box(f)))
    if missing_labels and types:
        log.warning("celeba-spoof: %d images not in the label JSON files", missing_labels)
    if not rows:
        raise BadDataError(f"{base / 'Data'}: no images under {{train,test}}/<id>/live|spoof/")
    return rows


# ---------------------------------------------------------------- YOLO detection sets
def parse_classes(spec: str | dict[int, str] | None) -> dict[int, str] | None:
    """``"0=spoof,1=live"`` -> ``{0: "spoof", 1: "live"}`` (a dict or ``None`` passes through).

    Raises:
        BadDataError: an item that is not ``<int>=<name>`` or a repeated id.
    """
    if spec is None or isinstance(spec, dict):
        return spec
    out: dict[int, str] = {}
    for item in (t.strip() for t in spec.split(",")):
        if not item:
            continue
        cid, sep, name = item.partition("=")
        if not sep or not cid.strip().lstrip("-").isdigit() or not name.strip():
            raise BadDataError(f"--classes: expected '<id>=<class>' items such as "
                               f"'0=spoof,1=live', found {item!r}")
        if int(cid) in out:
            raise BadDataError(f"--classes: class id {int(cid)} given twice in {spec!r}")
        out[int(cid)] = name.strip()
    if not out:
        raise BadDataError(f"--classes: no '<id>=<class>' items in {spec!r}")
    return out


def yolo_label_file(img: Path) -> Path | None:
    """The YOLO label file of an image: ``<stem>.txt`` beside it, else the same relative
    path under the parallel ``labels/`` folder of an ``images/`` + ``labels/`` tree
    (``a/images/b/x.jpg`` -> ``a/labels/b/x.txt``); ``None`` when neither exists."""
    beside = img.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = img.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            cand = Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt")
            if cand.is_file():
                return cand
            break
    return None


def read_yolo_labels(path: Path) -> list[tuple[int, float, float, float, float]]:
    """Lines ``class cx cy w h`` (box centre and size as fractions of the image) of a YOLO
    label file; blank lines are skipped, extra columns (segment points, confidence) ignored.

    Raises:
        BadDataError: a line that does not start with an integer class and four numbers in
            [0, 1] (the message names the file and line).
    """
    out = []
    for ln, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        vals = line.split()
        if not vals:
            continue
        try:
            if len(vals) < 5:
                raise ValueError
            cid = int(float(vals[0]))
            if cid != float(vals[0]):
                raise ValueError
            cx, cy, w, h = (float(v) for v in vals[1:5])
        except ValueError:
            raise BadDataError(f"{path}:{ln}: expected 'class cx cy w h' (YOLO, normalised), "
                               f"found {line.strip()!r}") from None
        if not all(-0.01 <= v <= 1.01 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise BadDataError(f"{path}:{ln}: box values must be fractions in [0, 1] with "
                               f"w, h > 0, found {line.strip()!r}")
        out.append((cid, cx, cy, w, h))
    return out


def _folder_label(rel: Path) -> str | None:
    for part in reversed(rel.parts[:-1]):
        k = part.lower()
        if k in LIVE_DIRS or k in SPOOF_DIRS:
            return LIVE_DIRS.get(k) or SPOOF_DIRS[k]
    return None


def _folder_split(rel: Path) -> str:
    return next((SPLIT_ALIASES[p.lower()] for p in reversed(rel.parts[:-1])
                 if p.lower() in SPLIT_ALIASES), "")


def index_yolo(root: Path, dataset: str | None = None,
               classes: str | dict[int, str] | None = None, label_from: str = "labels",
               **_: Any) -> list[dict[str, str]]:
    """Images + YOLO label files (class cx cy w h), beside them or in a parallel labels/.

    Label files sit beside the images or in the parallel ``labels/`` folder of an
    ``images/`` + ``labels/`` tree.

    The label is the class of the largest box mapped through ``classes`` (e.g.
    ``0=spoof,1=live``; ``label_from="labels"``), or the nearest ``live``/``real``/
    ``genuine`` or ``spoof``/``fake``/``attack`` folder name (``label_from="folder"``; the
    class ids are then ignored). The largest box becomes ``face_box_rel`` (``x0 y0 x1 y1``
    fractions, clipped to the image) and ``face_box`` (the same in pixels); ``n_boxes``
    counts the boxes in the file. A ``train``/``val``/``test`` folder above an image sets
    its split. Images with no usable label are skipped and counted in a warning.
    """
    root = _need_dir(root, "YOLO")
    if label_from not in ("labels", "folder"):
        raise BadDataError(f"--label-from: expected labels or folder, got {label_from!r}")
    cmap = parse_classes(classes)
    if label_from == "labels" and cmap is None:
        raise BadDataError("yolo layout: give --classes (e.g. 0=spoof,1=live) or "
                           "--label-from folder")
    name = dataset or root.name
    rows: list[dict[str, str]] = []
    bad: list[str] = []
    skipped: dict[str, int] = {}
    for f in _media(root):
        if not is_image_file(f):
            continue
        rel = f.relative_to(root)
        lf = yolo_label_file(f)
        try:
            boxes = read_yolo_labels(lf) if lf is not None else []
        except BadDataError as exc:
            bad.append(str(exc))
            continue
        big = max(boxes, key=lambda b: b[3] * b[4]) if boxes else None
        if label_from == "folder":
            label = _folder_label(rel)
            if label is None:
                skipped["no live/spoof folder above the image"] = skipped.get(
                    "no live/spoof folder above the image", 0) + 1
                continue
        else:
            assert cmap is not None
            if big is None:
                why = "no label file" if lf is None else "empty label file"
                skipped[why] = skipped.get(why, 0) + 1
                continue
            if big[0] not in cmap:
                bad.append(f"{lf}: class id {big[0]} not in --classes "
                           f"{','.join(f'{k}={v}' for k, v in cmap.items())}")
                continue
            label = cmap[big[0]]
        extra = {"n_boxes": str(len(boxes)), "face_box_rel": "", "face_box": ""}
        if big is not None:
            _, cx, cy, w, h = big
            rel_box = [min(max(v, 0.0), 1.0) for v in
                       (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]
            try:
                _, iw, ih = image_header(f)
            except BadImageError as exc:
                bad.append(str(exc))
                continue
            extra["face_box_rel"] = " ".join(f"{v:.6f}" for v in rel_box)
            extra["face_box"] = " ".join(
                f"{v * s:.1f}" for v, s in zip(rel_box, (iw, ih, iw, ih), strict=True))
        attack = "none" if label == "live" else ("unknown" if label == "spoof" else "")
        rows.append(_row(f, label, attack, name, video=rel.with_suffix("").as_posix(),
                         split=_folder_split(rel), **extra))
    if bad:
        listing = "\n".join(f"  {b}" for b in bad[:50])
        more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
        raise BadDataError(f"{len(bad)} bad YOLO label(s) under {root}:\n{listing}{more}")
    if skipped:
        log.warning("yolo: skipped %s", ", ".join(f"{n} image(s): {k}"
                                                   for k, n in skipped.items()))
    if not rows:
        raise BadDataError(f"{root}: no labelled images found (YOLO layout, label from "
                           f"{label_from})")
    return rows


LAYOUTS: dict[str, Callable[..., list[dict[str, str]]]] = {
    "folder": index_folder,
    "imagefolder": index_imagefolder,
    "casia-fasd": index_casia,
    "replay-attack": index_replay,
    "msu-mfsd": index_msu,
    "oulu-npu": index_oulu,
    "celeba-spoof": index_celeba,
    "yolo": index_yolo,
}
ALIASES = {"casia": "casia-fasd", "replay": "replay-attack", "idiap": "replay-attack",
           "msu": "msu-mfsd", "oulu": "oulu-npu", "celeba": "celeba-spoof"}


def layout_names() -> list[str]:
    return list(LAYOUTS)


def check_file(path: Path, full: bool = False) -> str | None:
    """``None`` when the file looks readable, else the reason. Quick: non-empty and the
    header opens; ``full``: the image decodes completely / a video frame decodes."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if is_video_file(path):
            if full:
                sample_frames(path, 1)
            else:
                _open(path).release()
        elif full:
            load_image(path)
        else:
            image_header(path)
    except (VitfasError, BadImageError, BadVideoError) as exc:
        return str(exc).split(": ", 1)[-1]
    except (OSError, SyntaxError, ValueError, cv2.error) as exc:
        return f"cannot open ({exc})"
    return None


def index_dataset(layout: str, root: str | Path, check: str = "quick",
                  progress: bool = False, **options: Any) -> list[dict[str, str]]:
    """Index ``root`` with the named layout; rows have absolute paths.

    Args:
        layout: one of :data:`LAYOUTS` (or an alias such as ``oulu``).
        root: the dataset's root folder.
        check: ``"none"``, ``"quick"`` (non-empty, header opens) or ``"full"`` (decodes).
        progress: show a progress bar while checking files.
        **options: layout options (``dataset`` for folder layouts, and ``skipped``: a list
            that receives the files they skip as neither images nor videos;
            ``protocol``/``fold`` for OULU-NPU).

    Raises:
        BadDataError: unknown layout, missing root, a layout violation, or unreadable files
            (every bad file is listed with its reason).
    """
    key = ALIASES.get(layout.lower(), layout.lower())
    if key not in LAYOUTS:
        raise BadDataError(
            f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if check not in ("none", "quick", "full"):
        raise BadDataError(f"check: expected none, quick or full, got {check!r}")
    rows = LAYOUTS[key](Path(root), **options)
    if check != "none":
        bad = [(r["path"], why)
               for r in tqdm(rows, desc=f"check {key}", unit="file", disable=not progress)
               if (why := check_file(Path(r["path"]), full=check == "full")) is not None]
        if bad:
            listing = "\n".join(f"  {p}: {why}" for p, why in bad[:50])
            more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
            raise BadDataError(f"{len(bad)} unreadable file(s) under {root}:\n{listing}{more}")
    return rows

