"""`vitfas train` with a teacher (``distill.*``): the logged loss, the heads, the bundle."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
import yaml

from vitfas import cli
from vitfas.bundle import load_bundle, save_bundle
from vitfas.train import run as run_mod
from vitfas.train.config import load_config
from vitfas.train.data import DataConfig, ImageFolderDataset, build_transform
from vitfas.train.engine import seed_everything
from vitfas.train.synthetic import write_imagefolder

TINY = {"overrides": {"patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2},
        "drop_path_rate": 0.0}
VIT = {"name": "vit_tiny_patch16_224", **TINY}
DEIT = "deit_tiny_distilled_patch16_224"
N_TRAIN = 128
# no random augmentation: the training batch is the images as the eval transform gives them
NO_AUG = {"scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.0, "brightness": 0.0,
          "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def _config(tmp_path, data_path, name="train.yaml", **sections):
    cfg = {
        "out": str(tmp_path / "run"),
        "model": dict(VIT),
        "data": {"format": "imagefolder", "path": str(data_path), "img_size": 32},
        "optim": {"lr": 1.0e-3, "warmup_epochs": 1},
        "trainer": {"epochs": 10, "batch_size": 16, "log_every": 5},
    }
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Halftone data, and a teacher bundle trained with the CLI on the same images with live
    and spoof swapped: its predictions are (almost always) the opposite of the labels, so a
    head that follows the teacher is told apart from one that follows the labels."""
    root = tmp_path_factory.mktemp("distill")
    data = write_imagefolder(root / "data", n_train=N_TRAIN, n_dev=32, n_test=32, size=32,
                             artifact="halftone", seed=1)
    swapped = root / "swapped"
    for split in ("train", "dev", "test"):
        for a, b in (("live", "spoof"), ("spoof", "live")):
            shutil.copytree(data / split / a, swapped / split / b)
    cfg = _config(root, swapped, "teacher.yaml", out=str(root / "teacher"))
    torch.set_num_threads(1)
    assert cli.main(["-q", "train", str(cfg)]) == 0
    return {"root": root, "data": data, "teacher": root / "teacher" / "bundle"}


def _images(split_dir, class_names):
    ds = ImageFolderDataset(split_dir, class_names,
                            build_transform(False, DataConfig(format="imagefolder", img_size=32)))
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.targets)


def _teacher_logits(setup, x):
    with torch.no_grad():
        return load_bundle(setup["teacher"]).model.eval()(x)


@pytest.mark.parametrize(("student", "kind"),
                         [(DEIT, "hard"), (DEIT, "soft"), ("vit_tiny_patch16_224", "soft"),
                          (DEIT, None)])
def test_logged_loss_is_the_hand_computed_loss(tmp_path, setup, student, kind):
    """One step on the whole training set: the loss in train_log.csv equals
    (1 - alpha) * CE(s_c, y) + alpha * L_distill(s_d, teacher) computed here by hand."""
    alpha, tau, ls = 0.3, 3.0, 0.1
    over = ([f"distill.teacher={setup['teacher']}", f"distill.kind={kind}",
             f"distill.alpha={alpha}", f"distill.tau={tau}"] if kind else [])
    cfg_path = _config(tmp_path, setup["data"], model={"name": student},
                       data={"augment": NO_AUG}, loss={"label_smoothing": ls},
                       trainer={"batch_size": N_TRAIN, "max_steps": 1, "log_every": 1})
    assert cli.main(["-q", "train", str(cfg_path), *over]) == 0
    with open(tmp_path / "run" / "train_log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["step"] == "1"

    # the student as the run built it (same seed), in training mode, on the same batch
    cfg = load_config(run_mod.TrainConfig, tmp_path / "run" / "config.yaml")
    seed_everything(cfg.trainer.seed)
    model = run_mod.build_model(cfg, 2).train()
    x, y = _images(setup["data"] / "train", ["spoof", "live"])
    with torch.no_grad():
        out = model(x)
    if student == DEIT:
        s_c, s_d = out
    else:
        s_c = s_d = out
    if kind is None:  # a DeiT without teacher: the heads' mean against the labels
        want = F.cross_entropy((s_c + s_d) / 2, y, label_smoothing=ls)
        assert "loss_distill" not in row
    else:
        t = _teacher_logits(setup, x)
        ce = F.cross_entropy(s_c, y, label_smoothing=ls)
        if kind == "hard":
            dist = -F.log_softmax(s_d, 1).gather(1, t.argmax(1, keepdim=True)).mean()
        else:
            p_t = (t / tau).softmax(1)
            kl = (p_t * ((t / tau).log_softmax(1) - (s_d / tau).log_softmax(1))).sum(1)
            dist = tau**2 * kl.mean()
        want = (1 - alpha) * ce + alpha * dist
        assert float(row["loss_ce"]) == pytest.approx(float(ce), rel=1e-5)
        assert float(row["loss_distill"]) == pytest.approx(float(dist), rel=1e-5)
        assert float(dist) > 0.1  # the teacher disagrees with the labels: a real term
    assert float(row["loss"]) == pytest.approx(float(want), rel=1e-5)


def test_distilled_student_bundle(tmp_path, setup, capsys):
    """The distillation head learns the teacher, the class head the labels; scoring uses the
    eval-mode mean of the two heads; the bundle records the teacher."""
    cfg = _config(tmp_path, setup["data"])
    teacher = str(setup["teacher"])
    assert cli.main(["-q", "train", str(cfg), f"model.name={DEIT}",
                     f"distill.teacher={teacher}", "distill.kind=soft", "distill.tau=3",
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    b = load_bundle(tmp_path / "run" / "bundle")
    assert b.config["architecture"]["name"] == DEIT

    x, y = _images(setup["data"] / "train", b.class_names)
    t_pred = _teacher_logits(setup, x).argmax(1)
    assert (t_pred == y).float().mean() < 0.1  # the swapped teacher: opposite of the labels
    m = b.model.train()
    with torch.no_grad():
        s_c, s_d = m(x)
    dist_agree = (s_d.argmax(1) == t_pred).float().mean().item()
    cls_agree = (s_c.argmax(1) == y).float().mean().item()
    assert dist_agree >= 0.85, dist_agree  # measured 0.97
    assert cls_agree >= 0.85, cls_agree  # measured 0.98

    # eval mode (bundles, metrics) is the mean of the two heads
    xt, yt = _images(setup["data"] / "test", b.class_names)
    with torch.no_grad():
        c, d = m.train()(xt)
        logits = m.eval()(xt)
    torch.testing.assert_close(logits, (c + d) / 2, rtol=1e-5, atol=1e-6)
    acc = (logits.argmax(1) == yt).float().mean().item()
    assert summary["metrics"]["test"]["acc"] == pytest.approx(acc, abs=1e-9)

    rec = b.config["training"]["distill"]
    assert rec["teacher"] == teacher and rec["kind"] == "soft" and rec["tau"] == 3.0
    assert rec["alpha"] == 0.5 and rec["kl_reduction"] == "batchmean"
    sha = hashlib.sha256((setup["teacher"] / "model.safetensors").read_bytes()).hexdigest()
    assert rec["teacher_sha256"] == sha
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["distill"]["teacher"] == teacher
    # no teacher: the training block says so
    plain = load_bundle(setup["teacher"])
    assert plain.config["training"]["distill"] is None


def test_teacher_with_other_classes_is_a_config_error(tmp_path, setup, capsys):
    other = tmp_path / "other_teacher"
    src = load_bundle(setup["teacher"])
    src.model.registry_name = "vit_tiny_patch16_224"
    save_bundle(other, src.model, class_names=["cat", "dog"],
                preprocessing=src.preprocessing)
    cfg = _config(tmp_path, setup["data"], model={"name": DEIT})
    assert cli.main(["-q", "train", str(cfg), f"distill.teacher={other}"]) == 1
    err = capsys.readouterr().err
    assert "['cat', 'dog']" in err and "['spoof', 'live']" in err and str(other) in err
    assert "same classes" in err
    assert not (tmp_path / "run" / "last.pt").exists()
    # a teacher that is neither a path nor a registry name; a bad kind
    assert cli.main(["-q", "train", str(cfg), "distill.teacher=no/such/teacher"]) == 1
    assert "no/such/teacher" in capsys.readouterr().err
    assert cli.main(["-q", "train", str(cfg), f"distill.teacher={other}",
                     "distill.kind=medium"]) == 1
    assert "distill.kind" in capsys.readouterr().err


def test_teacher_is_frozen_and_outside_the_optimiser(tmp_path, setup, monkeypatch):
    engines = []

    class Recording(run_mod.Engine):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            engines.append(self)

    monkeypatch.setattr(run_mod, "Engine", Recording)
    cfg = _config(tmp_path, setup["data"], model={"name": DEIT},
                  trainer={"epochs": 1, "ema_decay": 0.9})
    assert cli.main(["-q", "train", str(cfg), f"distill.teacher={setup['teacher']}"]) == 0
    (engine,) = engines
    teacher = engine.task.distillation.teacher
    t_params = list(teacher.parameters())
    assert t_params and not any(p.requires_grad for p in t_params)
    in_optim = {id(p) for g in engine.optimizer.param_groups for p in g["params"]}
    assert not in_optim & {id(p) for p in t_params}
    assert in_optim == {id(p) for p in engine.model.parameters()}
    assert not teacher.training and not any(m.training for m in teacher.modules())
    # unchanged after training
    fresh = load_bundle(setup["teacher"]).model.state_dict()
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, fresh[k]), k
    # checkpoints hold the student only
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    student_keys = set(engine.model.state_dict())
    assert set(ckpt["model"]) == student_keys and set(ckpt["ema"]) == student_keys
    assert "head_dist.weight" in student_keys
