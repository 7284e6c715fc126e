"""``vitfas eval`` end to end: a tiny bundle whose scores are known in closed form.

The tiny ViT is wired so that P(live) is a known increasing function of an image's grey
level: patch embedding channel 0 = mean pixel of the patch, channel 1 = its negative,
channels 2/3 = +c/-c; the blocks are identities (zero output projections); average pooling
then ``fc_norm`` (LayerNorm) gives ``m / sqrt((2 m^2 + 2 c^2) / D + eps)`` in channel 0 for
an image of normalised mean ``m``; the head maps it to logits ``[0, k * that]``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitfas.bundle import save_bundle
from vitfas.cli import main
from vitfas.metrics import Scores, evaluate, expected_calibration_error, select_threshold
from vitfas.metrics import evaluation as ev
from vitfas.models.vit import VisionTransformer, ViTConfig

D, C, K, EPS = 32, 0.5, 4.0, 1e-6
MEAN, STD = 0.5, 0.5
SIZE = 32


def expected_score(grey: int) -> float:
    m = (grey / 255.0 - MEAN) / STD
    z = m / math.sqrt((2 * m * m + 2 * C * C) / D + EPS)
    return 1.0 / (1.0 + math.exp(-K * z))


def tiny_bundle(path: Path, threshold: dict | None = None,
                calibration: dict | None = None) -> Path:
    cfg = ViTConfig(img_size=SIZE, patch_size=16, embed_dim=D, depth=2, num_heads=2,
                    num_classes=2, global_pool="avg", class_token=False, pos_embed="none",
                    norm_eps=EPS)
    model = VisionTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        w = model.patch_embed.proj.weight  # [D, 3, 16, 16]
        w[0] = 1.0 / (3 * 16 * 16)
        w[1] = -1.0 / (3 * 16 * 16)
        model.patch_embed.proj.bias[2] = C
        model.patch_embed.proj.bias[3] = -C
        model.fc_norm.weight.fill_(1.0)
        model.head.weight[1, 0] = K
    pre = {"detector": "none", "crop_scale": 1.0, "img_size": [SIZE, SIZE],
           "mean": [MEAN] * 3, "std": [STD] * 3, "colour_order": "RGB", "frames_per_video": 1}
    save_bundle(path, model, class_names=["spoof", "live"], live_index=1, preprocessing=pre,
                threshold=threshold, calibration=calibration)
    return path


class LocalManifestDataset(torch.utils.data.Dataset):
    """Stand-in with ManifestDataset's interface (rows, item -> (image, label))."""

    def __init__(self, manifest: Path, bundle) -> None:
        from vitfas.errors import BadImageError

        self.root = manifest.parent
        self.err = BadImageError
        with open(manifest, newline="") as f:
            self.rows = list(csv.DictReader(f))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        p = self.root / self.rows[i]["path"]
        try:
            img = Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        except OSError as exc:
            raise self.err(f"{p}: cannot read image ({exc})") from exc
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - MEAN) / STD, int(self.rows[i]["label"] == "live")


# rows: (grey, label, attack_type, video, split, fta)
ROWS = [
    # dev: live 230 220 90 ; print 200 ; replay 60 -> EER between 200 and 220 (see below)
    (230, "live", "none", "d1", "dev", ""),
    (220, "live", "none", "d2", "dev", ""),
    (90, "live", "none", "d3", "dev", ""),
    (200, "spoof", "print", "d4", "dev", ""),
    (60, "spoof", "replay", "d5", "dev", ""),
    # test: video t1 (live, 2 frames), t2 (live, FTA frame + frame), t3 live FTA-only,
    # t4 print, t5 replay (high), t6 mask is absent (only in train) -> undefined
    (240, "live", "none", "t1", "test", ""),
    (210, "live", "none", "t1", "test", ""),
    (150, "live", "none", "t2", "test", ""),
    (0, "live", "none", "t2", "test", "1"),
    (0, "live", "none", "t3", "test", "1"),
    (40, "spoof", "print", "t4", "test", ""),
    (70, "spoof", "print", "t4", "test", ""),
    (250, "spoof", "replay", "t5", "test", ""),
    (30, "spoof", "replay", "t6", "test", ""),
    (128, "spoof", "mask", "x1", "train", ""),
]


def write_manifest(root: Path, rows=ROWS, broken: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (g, lab, at, vid, split, fta) in enumerate(rows):
        path = f"img{i}.png"
        if fta:  # the crop failed: the path names a source that must not be read
            path = f"never_read/img{i}.png"
        else:
            Image.fromarray(np.full((40, 40, 3), g, np.uint8)).save(root / path)
        out.append({"path": path, "label": lab, "attack_type": at, "dataset": "gen",
                    "subject": vid, "video": vid, "frame": "0", "split": split, "fta": fta})
    if broken:
        (root / "bad.png").write_bytes(b"not a png")
        out.append({"path": "bad.png", "label": "spoof", "attack_type": "print",
                    "dataset": "gen", "subject": "b", "video": "tb", "frame": "0",
                    "split": "test", "fta": ""})
    m = root / "manifest.csv"
    with open(m, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    return m


@pytest.fixture()
def local_dataset(monkeypatch):
    monkeypatch.setattr(ev, "_open_dataset", LocalManifestDataset)


@pytest.fixture(params=["local", "ManifestDataset"])
def any_dataset(request, monkeypatch):
    """Both the stand-in and, once vitfas.data has landed, the real ManifestDataset."""
    if request.param == "local":
        monkeypatch.setattr(ev, "_open_dataset", LocalManifestDataset)
    else:
        pytest.importorskip("vitfas.data.datasets")
        pytest.importorskip("vitfas.data.transforms")
    return request.param


def test_row_is_fta():
    assert ev.row_is_fta({"path": "a.png", "fta": "1"})
    assert ev.row_is_fta({"path": "a.png", "fta": "True"})
    assert ev.row_is_fta({"path": "", "fta": ""})
    assert not ev.row_is_fta({"path": "a.png", "fta": "0"})
    assert not ev.row_is_fta({"path": "a.png"})
    assert ev.video_key({"dataset": "oulu", "video": "v1"}) == "oulu/v1"
    assert ev.video_key({"dataset": "oulu", "video": ""}) == ""


def _expected_frame_scores(split: str) -> Scores:
    sel = [r for r in ROWS if r[4] == split]
    return Scores.from_arrays(
        [float("nan") if r[5] else expected_score(r[0]) for r in sel],
        [r[1] for r in sel], [r[2] for r in sel],
        species=["mask", "print", "replay"],
    )


def test_expected_score_is_what_the_model_computes(tmp_path):
    from vitfas.bundle import load_bundle

    b = load_bundle(tiny_bundle(tmp_path / "b"))
    for g in (0, 60, 128, 200, 255):
        x = torch.full((1, 3, SIZE, SIZE), (g / 255.0 - MEAN) / STD)
        p = torch.softmax(b.model(x), -1)[0, 1].item()
        assert p == pytest.approx(expected_score(g), abs=1e-5)
    assert expected_score(200) < expected_score(220)  # increasing in grey level


def test_eval_end_to_end_numbers(tmp_path, any_dataset, capsys):
    bundle = tiny_bundle(tmp_path / "bundle")
    manifest = write_manifest(tmp_path / "data")
    out = tmp_path / "report"
    rc = main(["-q", "eval", str(bundle), str(manifest), "--criterion", "eer", "-o", str(out),
               "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["meta"]["rows"] == len(ROWS)
    assert payload["meta"]["rows_evaluated"] == len(ROWS) - 1  # the train row is not scored
    assert payload["meta"]["fta_rows"] == 2
    assert payload["meta"]["unreadable_rows"] == 0  # FTA rows are never read

    # ---- frame level, computed independently from the closed-form scores
    dev, test = _expected_frame_scores("dev"), _expected_frame_scores("test")
    thr = select_threshold(dev, "eer")
    # by hand: dev live .. 230 220 90, attacks 200 60. Thresholds at s(200): FAR 1/2,
    # FRR 1/3; at s(220): FAR 0, FRR 1/3 -> EER 1/3 at s(200) + 1/3 (s(220) - s(200))
    s200, s220 = expected_score(200), expected_score(220)
    assert thr.value == pytest.approx(s200 + (s220 - s200) / 3)
    frame = payload["frame"]
    assert frame["threshold"]["value"] == pytest.approx(thr.value, abs=1e-5)
    assert frame["threshold"]["criterion"] == "dev EER"
    assert frame["splits"]["dev"]["eer"] == pytest.approx(1 / 3, abs=1e-6)
    t = frame["splits"]["test"]["at_threshold"]
    # test at that threshold (~s(207)): live 240 210 accepted; 150, two FTAs rejected -> 3/5
    assert t["bpcer"] == pytest.approx(3 / 5)
    assert t["bpnrr"] == pytest.approx(2 / 5)
    assert t["apcer"] == {"mask": None, "print": 0.0, "replay": 0.5}
    assert t["apcer_max"] == 0.5 and t["apcer_max_type"] == "replay"
    assert t["acer"] == pytest.approx((0.5 + 0.6) / 2)
    assert t["hter"] == pytest.approx((1 / 4 + 3 / 5) / 2)
    assert t["confusion"]["bona fide"] == {"n": 5, "accepted": 2, "rejected": 1, "fta": 2}
    ref = evaluate({"dev": dev, "test": test}, threshold=thr)["splits"]["test"]
    got = frame["splits"]["test"]
    for key in ("eer", "auc"):
        assert got[key] == pytest.approx(ref[key], abs=1e-5)
    assert got["bpcer20"]["value"] == pytest.approx(ref["bpcer20"]["value"])

    # ---- video level: mean of each video's acquired frames
    video = payload["video"]
    vt = video["splits"]["test"]
    assert vt["counts"]["bona_fide"] == 3 and vt["counts"]["attack"] == 3
    assert vt["counts"]["fta_bona_fide"] == 1  # t3 had no acquired frame
    vthr = video["threshold"]["value"]
    # videos: t1 mean(s240, s210), t2 = s150, t3 FTA; t4 mean(s40, s70), t5 s250, t6 s30
    vlive = [(expected_score(240) + expected_score(210)) / 2, expected_score(150)]
    exp_bpcer = (sum(v < vthr for v in vlive) + 1) / 3
    assert vt["at_threshold"]["bpcer"] == pytest.approx(exp_bpcer)
    assert vt["at_threshold"]["apcer"]["replay"] == pytest.approx(0.5)

    # ---- files: JSON equals stdout, markdown has the rows, PNGs readable, scores.csv
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["frame"] == payload["frame"]
    md = (out / "report.md").read_text()
    assert "| bona fide | 5 | 2 | 1 | 2 |" in md
    assert "| test | n/a | 0.00% | 50.00% |" in md
    with open(out / "scores.csv", newline="") as f:
        srows = list(csv.DictReader(f))
    assert len(srows) == len(ROWS)
    assert float(srows[0]["score"]) == pytest.approx(expected_score(230), abs=1e-5)
    assert srows[8]["fta"] == "1" and srows[8]["score"] == ""
    assert srows[-1]["score"] == ""  # train row not scored
    for name in ("frame_roc", "frame_det", "video_det", "frame_hist_test",
                 "frame_confusion_dev"):
        with Image.open(out / f"{name}.png") as im:
            assert im.size == (600, 450)


def test_eval_uses_bundle_threshold_and_human_summary(tmp_path, local_dataset, capsys):
    bundle = tiny_bundle(tmp_path / "bundle",
                         threshold={"value": 0.5, "criterion": "dev EER", "split": "dev"})
    manifest = write_manifest(tmp_path / "data", broken=True)
    rc = main(["-q", "eval", str(bundle), str(manifest), "-o", str(tmp_path / "r")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "threshold 0.5 (dev EER (from the bundle), chosen on dev)" in text
    assert "comparable to published OCIM tables" in text
    assert "unreadable images 1" in text
    payload = json.loads((tmp_path / "r" / "metrics.json").read_text())
    t = payload["frame"]["splits"]["test"]["at_threshold"]
    assert t["threshold"] == 0.5
    # grey < 128 scores < 0.5: live 240 210 150 accepted (150 > 128), FTAs rejected -> 2/5
    assert t["bpcer"] == pytest.approx(2 / 5)
    # the unreadable print is an FTA, counted (rejected), not dropped: print n = 3
    assert t["confusion"]["print"] == {"n": 3, "accepted": 0, "rejected": 2, "fta": 1}
    assert payload["meta"]["unreadable_rows"] == 1


def test_eval_usage_and_data_errors(tmp_path, local_dataset, capsys):
    bundle = tiny_bundle(tmp_path / "bundle")
    manifest = write_manifest(tmp_path / "data")
    assert main(["eval", str(bundle), str(manifest), "--criterion", "far=0.1"]) == 2
    # no threshold in the bundle and no dev split -> clear error, exit 1
    assert main(["-q", "eval", str(bundle), str(manifest), "--dev-split", "nope",
                 "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "has no threshold" in err and "'nope'" in err
    assert main(["-q", "eval", str(tmp_path / "missing"), str(manifest)]) == 1
    assert "not a model bundle" in capsys.readouterr().err


def test_eval_counts_a_decompression_bomb_as_an_fta(tmp_path, capsys, bomb_png):
    """The real ManifestDataset on a manifest whose test print is a bomb: an FTA with its
    reason in the log, the other rows scored, exit 0."""
    pytest.importorskip("vitfas.data.datasets")
    bundle = tiny_bundle(tmp_path / "bundle")
    manifest = write_manifest(tmp_path / "data", broken=True)
    (tmp_path / "data" / "bad.png").write_bytes(bomb_png())
    rc = main(["-q", "eval", str(bundle), str(manifest), "-o", str(tmp_path / "r"), "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["meta"]["unreadable_rows"] == 1
    assert payload["meta"]["rows_evaluated"] == len(ROWS)


def test_eval_takes_a_dataset_folder_as_train_does(tmp_path, capsys):
    """The folder form ``train`` reads (split/live, split/spoof[/type]) needs no manifest;
    spoof files with no type folder get the generic attack type ``attack``."""
    bundle = tiny_bundle(tmp_path / "bundle",
                         threshold={"value": 0.5, "criterion": "dev EER", "split": "dev"})
    tree = {"dev/live/a.png": 230, "dev/live/b.png": 90, "dev/spoof/print/c.png": 200,
            "dev/spoof/d.png": 60, "test/live/e.png": 240, "test/live/f.png": 100,
            "test/spoof/print/g.png": 40, "test/spoof/h.png": 250, "test/spoof/i.png": 20}
    for rel, grey in tree.items():
        (tmp_path / "synth" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40, 3), grey, np.uint8)).save(tmp_path / "synth" / rel)
    out = tmp_path / "r"
    assert main(["-q", "eval", str(bundle), str(tmp_path / "synth"), "-o", str(out)]) == 0
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["meta"]["manifest"] == str(out / "manifest.csv")
    t = payload["frame"]["splits"]["test"]["at_threshold"]
    # at 0.5: grey >= 128 accepted. live 240 yes, 100 no; print 40 no; attack 250 yes, 20 no
    assert t["bpcer"] == pytest.approx(1 / 2)
    assert t["confusion"]["attack"] == {"n": 2, "accepted": 1, "rejected": 1, "fta": 0}
    assert t["confusion"]["print"]["n"] == 1
    assert "(unknown)" not in capsys.readouterr().out
    # neither a file nor a folder: the message says which command makes a manifest
    assert main(["-q", "eval", str(bundle), str(tmp_path / "nothing")]) == 1
    assert "vitfas data index" in capsys.readouterr().err


def test_eval_applies_the_bundle_temperature_and_reports_calibration(tmp_path, local_dataset,
                                                                    capsys):
    """A bundle with T = 2: every score is sigmoid(logit(s) / 2) of the plain closed form,
    the bundle's threshold and dev margin are carried into the report, ECE per split."""
    margin = {"interval": [0.2, 0.8], "score": 0.6, "logit": 2.7726, "rule":
              "interval midpoint (logit)"}
    bundle = tiny_bundle(
        tmp_path / "bundle",
        threshold={"value": 0.5, "criterion": "dev EER (interval midpoint, logit)",
                   "split": "dev", "margin": margin},
        calibration={"method": "temperature", "temperature": 2.0, "split": "dev"})
    manifest = write_manifest(tmp_path / "data")
    rc = main(["-q", "eval", str(bundle), str(manifest), "-o", str(tmp_path / "r")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "dev margin: 0.6 (2.773 in logits), interval (0.2, 0.8]" in text
    assert "ECE" in text
    with open(tmp_path / "r" / "scores.csv", newline="") as f:
        srows = list(csv.DictReader(f))

    def calibrated(g: int) -> float:
        s = expected_score(g)
        return 1 / (1 + math.exp(-math.log(s / (1 - s)) / 2))

    for row, (g, *_rest) in zip(srows, ROWS):
        if row["score"]:
            assert float(row["score"]) == pytest.approx(calibrated(g), abs=1e-5)
    assert float(srows[0]["score"]) != pytest.approx(expected_score(ROWS[0][0]), abs=1e-3)
    payload = json.loads((tmp_path / "r" / "metrics.json").read_text())
    frame = payload["frame"]
    assert frame["threshold"]["margin"] == margin
    dev = _expected_frame_scores("dev")
    dev_cal = Scores.from_arrays([calibrated(r[0]) for r in ROWS if r[4] == "dev"],
                                 dev.is_live.astype(int))
    want = expected_calibration_error(dev_cal.scores, dev_cal.is_live)
    assert frame["splits"]["dev"]["calibration"]["ece"] == pytest.approx(want, abs=1e-5)
    assert frame["splits"]["dev"]["calibration"]["bins"] == 10
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Dev margin" in md and "](frame_reliability.png)" in md
    with Image.open(tmp_path / "r" / "frame_reliability.png") as im:
        assert im.size == (600, 450)
