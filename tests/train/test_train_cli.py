"""`vitfas train` end to end: it must learn, adapters, resume, bundles, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from vitfas import cli
from vitfas.bundle import load_bundle
from vitfas.metrics import Scores, error_rates
from vitfas.train.synthetic import write_imagefolder

TINY_MODEL = {
    "name": "vit_tiny_patch16_224",
    "overrides": {"patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2},
    "drop_path_rate": 0.0,
}


def _config(tmp_path, data_path, **sections):
    cfg = {
        "out": str(tmp_path / "run"),
        "model": dict(TINY_MODEL),
        "data": {"format": "imagefolder", "path": str(data_path), "img_size": 32},
        "optim": {"lr": 1.0e-3, "warmup_epochs": 1},
        "trainer": {"epochs": 5, "batch_size": 32, "best_metric": "eer", "best_mode": "min",
                    "log_every": 5},
    }
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _scores(bundle, split_dir):
    """Score a split folder with a loaded bundle: (P(live), labels, attack types)."""
    from vitfas.train.data import DataConfig, ImageFolderDataset, build_transform

    dc = DataConfig(format="imagefolder", img_size=bundle.preprocessing["img_size"][0],
                    mean=tuple(bundle.preprocessing["mean"]),
                    std=tuple(bundle.preprocessing["std"]))
    ds = ImageFolderDataset(split_dir, bundle.class_names, build_transform(False, dc))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        p = bundle.model(x).softmax(1)[:, bundle.live_index].numpy()
    labels = np.array([int(t == bundle.live_index) for t in ds.targets])
    return p, labels, [r["attack_type"] for r in ds.rows]


def test_it_must_learn_halftone(tmp_path, capsys):
    """A small ViT from scratch learns a print (halftone) artifact: test ACER < 5%."""
    data = write_imagefolder(tmp_path / "synth", n_train=480, n_dev=160, n_test=320,
                             size=32, artifact="halftone", seed=0)
    cfg = _config(tmp_path, data)
    assert cli.main(["-q", "train", str(cfg), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run = tmp_path / "run"
    bundle = load_bundle(run / "bundle")
    assert bundle.class_names == ["spoof", "live"] and bundle.live_index == 1
    assert bundle.config["threshold"]["criterion"].startswith("dev EER")
    assert bundle.config["threshold"]["margin"]["score"] is not None
    assert bundle.config["calibration"] == {"method": "none", "temperature": 1.0}
    assert bundle.preprocessing["img_size"] == [32, 32]
    assert bundle.preprocessing["frames_per_video"] == 8  # videos: several frames, not 1
    # score the held-out test split independently, at the dev threshold from the bundle
    scores, labels, attacks = _scores(bundle, data / "test")
    m = error_rates(Scores.from_arrays(scores, labels, attacks), bundle.threshold)
    assert m.acer < 0.05, m
    assert m.acer == pytest.approx(summary["metrics"]["test"]["acer"], abs=1e-9)
    saved = json.loads((run / "bundle" / "metrics.json").read_text())
    assert saved["threshold"] == bundle.config["threshold"]
    assert saved["splits"]["test"]["at_threshold"]["acer"] == pytest.approx(m.acer, abs=1e-9)
    assert set(saved["splits"]["test"]["at_threshold"]["apcer"]) == {"spoof"}
    for f in ("config.yaml", "last.pt", "best.pt", "train_log.csv", "eval_log.csv"):
        assert (run / f).is_file(), f
    assert any((run / "tb").iterdir())
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["best_metric"] == "eer"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("d") / "s", n_train=64, n_dev=32,
                             n_test=32, size=32, artifact="moire", seed=1)


def test_adapters_scope_and_resume(tmp_path, small_data, capsys):
    cfg = _config(tmp_path, small_data, adapters={"bottleneck": 8, "positions": ["attn", "mlp"]},
                  model={"trainable": "adapters"}, data={"balance": True},
                  trainer={"epochs": 2, "batch_size": 16, "ema_decay": 0.5})
    args = ["-q", "train", str(cfg), "--json"]
    assert cli.main(["-q", "train", str(cfg), "trainer.max_steps=3", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert not first["finished"] and first["steps"] == 3
    assert 0 < first["trainable_share"] < 0.5
    # an existing run is not overwritten by accident
    assert cli.main(args) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main([*args, "--resume"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["finished"] and done["steps"] == 8
    b = load_bundle(tmp_path / "run" / "bundle")
    assert b.config["adapters"]["positions"] == ["attn", "mlp"]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    # the same run without interruption (balanced sampler, random flips): identical weights
    straight = tmp_path / "straight"
    assert cli.main(["-q", "train", str(cfg), f"out={straight}"]) == 0
    ref = torch.load(straight / "last.pt", weights_only=True)
    for k, v in ref["model"].items():
        assert torch.equal(v, ckpt["model"][k]), k
    for k, v in ref["ema"].items():
        assert torch.equal(v, ckpt["ema"][k]), k
    # --overwrite starts afresh in a used folder, deleting only what a run writes
    (straight / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert cli.main(["-q", "train", str(cfg), f"out={straight}", "trainer.max_steps=1",
                     "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1
    assert (straight / "notes.txt").read_text() == "mine"
    assert cli.main(["-q", "train", str(cfg), f"out={straight}", "--overwrite",
                     "--resume"]) == 1
    assert "pick one" in capsys.readouterr().err
    assert b.config["training"]["trainable"] == "adapters"
    # frozen backbone weights never moved: compare with a fresh model of the same seed
    from vitfas.train.config import load_config
    from vitfas.train.engine import seed_everything
    from vitfas.train.run import TrainConfig, build_model

    tc = load_config(TrainConfig, cfg)
    seed_everything(tc.trainer.seed)
    fresh = build_model(tc, 2)
    moved = {k for k, v in fresh.state_dict().items() if not torch.equal(v, ckpt["model"][k])}
    in_scope = {k for k in moved if "adapter" in k or "norm" in k or k.startswith("head.")}
    assert moved == in_scope, sorted(moved - in_scope)
    assert any(".mlp_adapter.up." in k for k in moved) and "head.weight" in moved


def test_temperature_calibration_recorded_and_threshold_on_calibrated_scores(
        tmp_path, small_data, capsys):
    """output.calibrate: temperature fits T on dev; the bundle records it and the threshold,
    margin and ECE are those of the calibrated dev scores softmax(logits / T)."""
    from vitfas.metrics import expected_calibration_error, scaled_softmax, select_threshold

    cfg = _config(tmp_path, small_data, output={"calibrate": "temperature"},
                  trainer={"epochs": 2, "batch_size": 16})
    assert cli.main(["-q", "train", str(cfg)]) == 0
    text = capsys.readouterr().out
    b = load_bundle(tmp_path / "run" / "bundle")
    cal = b.config["calibration"]
    assert cal["method"] == "temperature" and cal["split"] == "dev" and cal["n"] == 32
    assert b.temperature == cal["temperature"] and 0.05 <= b.temperature <= 20
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    assert f"temperature    {cal['temperature']:.4g}" in text and "dev margin" in text
    # score dev independently: the bundle's threshold is the one chosen on calibrated scores
    from vitfas.train.data import DataConfig, ImageFolderDataset, build_transform

    dc = DataConfig(img_size=32, mean=tuple(b.preprocessing["mean"]),
                    std=tuple(b.preprocessing["std"]))
    ds = ImageFolderDataset(small_data / "dev", b.class_names, build_transform(False, dc))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        p = scaled_softmax(b.model(x), b.temperature)[:, 1].double().numpy()
    live = np.array([int(t == b.live_index) for t in ds.targets])
    dev = Scores.from_arrays(p, live, [r["attack_type"] for r in ds.rows])
    thr = select_threshold(dev)
    assert b.threshold == pytest.approx(thr.value, abs=1e-5)
    assert b.config["threshold"]["criterion"] == thr.criterion
    m = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    ece = expected_calibration_error(p, live)
    assert m["splits"]["dev"]["calibration"]["ece"] == pytest.approx(ece, abs=1e-5)
    assert cal["ece_after"] == pytest.approx(ece, abs=1e-5)
    # no dev split: a clear error before training starts
    (tmp_path / "nodev").mkdir()
    bad = _config(tmp_path / "nodev", small_data, output={"calibrate": "temperature"},
                  data={"dev_split": ""}, trainer={"epochs": 1, "batch_size": 16})
    assert cli.main(["-q", "train", str(bad)]) == 1
    assert "output.calibrate: temperature" in capsys.readouterr().err


def test_generic_imagefolder_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 6)):
        for c, cls in enumerate(("cat", "dog", "emu")):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, (32, 32, 3)) + 80 * c
                out = tmp_path / "d" / split / cls / f"{i}.png"
                Image.fromarray(img.astype(np.uint8)).save(out)
    cfg = _config(tmp_path, tmp_path / "d", data={"dev_split": "val", "test_split": ""},
                  trainer={"epochs": 3, "batch_size": 12, "best_metric": "acc",
                           "best_mode": "max"}, loss={"label_smoothing": 0.1})
    assert cli.main(["-q", "train", str(cfg)]) == 0
    b = load_bundle(tmp_path / "run" / "bundle")
    assert b.class_names == ["cat", "dog", "emu"] and b.live_index is None and b.threshold is None
    metrics = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    assert metrics["classification"]["dev"]["acc"] > 0.9  # classes differ in brightness


def test_cli_config_errors(tmp_path, small_data, capsys):
    cfg = _config(tmp_path, small_data)
    assert cli.main(["train", str(cfg), "optim.lrr=1"]) == 1
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "valid keys" in err and "layer_decay" in err
    assert cli.main(["train", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["train", str(cfg), "model.pretrained=/no/such/ckpt"]) == 1
    assert "/no/such/ckpt does not exist" in capsys.readouterr().err
    assert cli.main(["train", str(cfg), "data.path=/no/such/dir"]) == 1
    assert "/no/such/dir/train does not exist" in capsys.readouterr().err


def test_fas_manifest_with_fta_and_recipe(tmp_path, capsys):
    """A vitfas manifest: splits from the `split` column, FTA rows counted in the metrics,
    the crop recipe of `data prepare` (prepare.json) copied into the bundle."""
    import csv

    root = write_imagefolder(tmp_path / "img", n_train=64, n_dev=32, n_test=32, size=32,
                             artifact="moire", seed=2)
    rows = []
    for split in ("train", "dev", "test"):
        for label in ("live", "spoof"):
            for p in sorted((root / split / label).glob("*.png")):
                rows.append({"path": str(p.relative_to(tmp_path)), "label": label,
                             "attack_type": "none" if label == "live" else "replay",
                             "dataset": "synth", "subject": p.stem, "video": p.stem,
                             "frame": "", "split": split, "fta": "0"})
    rows.append({**rows[-1], "path": "img/missing_face.png", "fta": "1"})  # a test attack FTA
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "prepare.json").write_text(json.dumps(
        {"recipe": {"detector": "none", "scale": 1.3, "size": 32, "colour_order": "RGB",
                    "pad": "constant"}, "frames": 4, "format": "png"}))
    cfg = _config(tmp_path, tmp_path / "manifest.csv",
                  data={"format": "manifest", "balance": True},
                  trainer={"epochs": 2, "batch_size": 16})
    assert cli.main(["-q", "train", str(cfg), "--json"]) == 0
    capsys.readouterr()
    b = load_bundle(tmp_path / "run" / "bundle")
    assert b.class_names == ["spoof", "live"] and b.threshold is not None
    assert b.preprocessing["crop_scale"] == 1.3 and b.preprocessing["frames_per_video"] == 4
    m = json.loads((tmp_path / "run" / "bundle" / "metrics.json").read_text())
    counts = m["splits"]["test"]["counts"]
    assert counts["attack"] == 17 and counts["fta_attack"] == 1
    assert list(m["splits"]["test"]["at_threshold"]["apcer"]) == ["replay"]
    assert str(tmp_path / "manifest.csv") in b.config["training"]["data"]


def test_backbone_from_timm_checkpoint_adapter_only_bundle(tmp_path, small_data, capsys):
    """model.pretrained = a timm checkpoint file; frozen backbone keeps its weights; the
    adapter-only bundle is small and reloads onto that checkpoint with the same logits."""
    weights = pytest.importorskip("vitfas.weights")
    if not hasattr(weights, "load_checkpoint"):
        pytest.skip("vitfas.weights.load_checkpoint not available yet (weights part)")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, num_classes=10)
    ckpt = tmp_path / "timm_vit.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(ckpt))
    cfg = _config(tmp_path, small_data, adapters={"bottleneck": 8},
                  model={"pretrained": str(ckpt), "trainable": "adapters"},
                  output={"adapter_only": True}, trainer={"epochs": 1, "batch_size": 16})
    assert cli.main(["-q", "train", str(cfg), "--json"]) == 0
    capsys.readouterr()
    bdir = tmp_path / "run" / "bundle"
    b = load_bundle(bdir)
    assert b.config["base_checkpoint"] == str(ckpt.resolve())
    assert (bdir / "model.safetensors").stat().st_size < 0.5 * ckpt.stat().st_size
    sd = b.model.state_dict()
    for k in ("patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "pos_embed"):
        assert torch.equal(sd[k], ref.state_dict()[k]), k
    trained = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(sd[k], trained[k]) for k in trained)
