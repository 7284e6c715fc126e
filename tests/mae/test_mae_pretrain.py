"""`vitfas pretrain-mae`: runs, learns, resumes exactly, writes the pictures and a
fine-tunable encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitfas.cli import main
from vitfas.models import VisionTransformer, ViTConfig
from vitfas.pretrain.mae import collect_images
from vitfas.weights.core import check_and_load
from vitfas.weights.mae import load_mae, load_mae_encoder

TINY = [
    "model.name=mae_vit_tiny_patch16", "model.img_size=32", "model.overrides.patch_size=8",
    "model.overrides.embed_dim=32", "model.overrides.depth=2", "model.overrides.num_heads=2",
    "model.overrides.decoder_embed_dim=32", "model.overrides.decoder_depth=1",
    "model.overrides.decoder_num_heads=2",
]



def _smooth_image(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    a, b, c = rng.random(3) * 3
    img = np.stack([np.sin(2 * np.pi * (a * x + b * y)), x * c - y, np.cos(2 * np.pi * c * y)],
                   -1)
    return ((img - img.min()) / (np.ptp(img) + 1e-9) * 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(_smooth_image(rng)).save(d / ("sub" if i % 2 else "") / f"im{i}.png")
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    (d / "notes.txt").write_text("ignored")
    return d


def _config(tmp_path: Path, text: str = "") -> Path:
    p = tmp_path / "mae.yaml"
    p.write_text("trainer:\n  batch_size: 4\n  log_every: 1\n" + text)
    return p


def _run(cfg: Path, *args: str) -> tuple[int, dict]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["-q", "pretrain-mae", str(cfg), *args, "--json"])
    out = buf.getvalue()
    return rc, (json.loads(out) if rc == 0 else {})


def _losses(run: Path) -> list[float]:
    with open(run / "train_log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_collect_images_folder_and_manifest(image_dir: Path, tmp_path: Path) -> None:
    found = collect_images(image_dir)
    assert len(found.paths) == 8
    reasons = dict(found.skipped)
    assert reasons[str(image_dir / "notes.txt")] == "not an image file"
    assert reasons[str(image_dir / "broken.jpg")].startswith("unreadable")
    man = tmp_path / "m.csv"
    rows = [("imgs/im0.png", "train", ""), ("imgs/sub/im1.png", "dev", ""),
            ("imgs/v.mp4", "train", ""), ("imgs/missing.png", "train", ""),
            ("imgs/im2.png", "train", "1")]
    man.write_text("path,label,attack_type,dataset,subject,video,frame,split,fta\n" + "".join(
        f"{p},live,none,d,s,v,,{s},{f}\n" for p, s, f in rows))
    got = collect_images(man, split="train")
    assert [p.name for p in got.paths] == ["im0.png"]
    assert sorted(r for _, r in got.skipped) == [
        "failure to acquire (fta=1)", "missing", "not an image file"]
    from vitfas.errors import BadDataError

    (tmp_path / "bad.csv").write_text("file,label\nx.png,live\n")
    with pytest.raises(BadDataError, match=r"bad.csv.*lacks column"):
        collect_images(tmp_path / "bad.csv")
    with pytest.raises(BadDataError, match="does not exist"):
        collect_images(tmp_path / "nowhere")
    # an absent split names the splits the manifest has and the option to pick one
    with pytest.raises(BadDataError, match=r"split='test'.*splits found: 'dev', 'train'.*"
                                           r"data\.split="):
        collect_images(man, split="test")


def test_pretrain_runs_writes_png_and_fine_tunable_encoder(image_dir: Path,
                                                           tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = _config(tmp_path, "vis:\n  every: 2\n  num_images: 3\n")
    rc, summary = _run(cfg, *TINY, f"data.source={image_dir}", f"out={run}",
                       "trainer.epochs=1", "model.norm_pix_loss=false")
    assert rc == 0
    assert summary["steps"] == 2 and summary["images"] == 8 and summary["skipped"] == 2
    assert (run / "last.pt").is_file() and (run / "config.yaml").is_file()
    assert len(_losses(run)) == 2
    # picture: 3 rows x (original | masked | reconstruction), 32 px tiles, 2 px gaps, header 14
    png = run / "vis" / "step_000002.png"
    assert Path(summary["vis"]) == png
    img = np.asarray(Image.open(png))
    assert img.shape == (14 + 3 * 32 + 4 * 2, 3 * 32 + 4 * 2, 3)
    # 75 % of the 16 patches (12) are hidden in each masked tile; the reconstruction keeps
    # the visible patches of the original exactly
    for r in range(3):
        y = 14 + 2 + r * 34
        tiles = [img[y:y + 32, 2 + j * 34: 2 + j * 34 + 32].astype(int) for j in range(3)]
        patches = [t.reshape(4, 8, 4, 8, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
                   for t in tiles]
        hidden = (patches[1] == 96).all(1)
        assert hidden.sum() == 12
        assert (patches[2][~hidden] == patches[0][~hidden]).all()
        assert (patches[1][~hidden] == patches[0][~hidden]).all()
    # the encoder folder is a headless ViT that loads strictly
    enc = json.loads((run / "encoder" / "config.json").read_text())
    assert enc["architecture"]["class"] == "VisionTransformer"
    vcfg = ViTConfig.from_dict({**enc["architecture"]["config"], "img_size": (32, 32)})
    from safetensors.torch import load_file

    sd = load_file(str(run / "encoder" / "model.safetensors"))
    check_and_load(VisionTransformer(vcfg), sd, "encoder")
    vit2 = VisionTransformer(ViTConfig.from_dict({**vcfg.to_dict(), "num_classes": 2}))
    missing, unexpected = vit2.load_state_dict(sd, strict=False)
    assert sorted(missing) == ["head.bias", "head.weight"] and not unexpected
    # the full MAE is reloadable and equals the trained weights
    mae = load_mae(run / "mae").eval()
    # ... and the fine-tuning entry point gives a ViT computing exactly the MAE encoder
    x = torch.randn(2, 3, 32, 32)
    latent, _, _ = mae.forward_encoder(x, mask_ratio=0.0, noise=torch.arange(16.0).repeat(2, 1))
    for src in ("encoder", "mae"):
        vit = load_mae_encoder(run / src, num_classes=2).eval()
        assert vit.head.out_features == 2
        torch.testing.assert_close(vit.forward_features(x), latent, rtol=0, atol=1e-5)
    big = load_mae_encoder(run / "encoder", num_classes=2, img_size=48)
    assert big(torch.randn(1, 3, 48, 48)).shape == (1, 2)
    assert big.pos_embed.shape == (1, 1 + 36, 32)
    ckpt = torch.load(run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(mae.state_dict()[k], v) for k, v in ckpt.items())
    # a second run into the same folder must ask for --resume
    rc2, _ = _run(cfg, *TINY, f"data.source={image_dir}", f"out={run}")
    assert rc2 == 1


def test_resume_matches_uninterrupted_run(image_dir: Path, tmp_path: Path) -> None:
    # vis.every=1: rendering every step must not disturb the training RNG streams
    common = [*TINY, f"data.source={image_dir}", "trainer.epochs=2", "vis.every=1",
              "vis.num_images=1", "model.overrides.drop_path_rate=0.2"]
    cfg = _config(tmp_path)
    rc, full = _run(cfg, *common, f"out={tmp_path / 'full'}")
    assert rc == 0 and full["steps"] == 4
    rc, part = _run(cfg, *common, f"out={tmp_path / 'part'}", "trainer.max_steps=3")
    assert rc == 0 and part["steps"] == 3 and not part["finished"]
    rc, rest = _run(cfg, *common, f"out={tmp_path / 'part'}", "--resume")
    assert rc == 0 and rest["steps"] == 4 and rest["finished"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "full") == _losses(tmp_path / "part")
    assert len(list((tmp_path / "part" / "vis").glob("step_*.png"))) == 4


def test_loss_decreases_over_50_steps(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "faces").mkdir()
    lines = []
    for i in range(24):
        Image.fromarray(_smooth_image(rng)).save(tmp_path / "faces" / f"{i}.png")
        lines.append(f"faces/{i}.png,live,none,synth,s{i},v{i},,{'train' if i < 20 else 'dev'}\n")
    man = tmp_path / "train.csv"
    man.write_text("path,label,attack_type,dataset,subject,video,frame,split\n" + "".join(lines))
    cfg = _config(tmp_path, "optim:\n  lr: 2.0e-3\n  warmup_steps: 5\n")
    rc, s = _run(cfg, *TINY, f"data.source={man}", "data.split=train",
                 f"out={tmp_path / 'run'}", "trainer.epochs=10", "vis.every=0",
                 "model.norm_pix_loss=false", "data.min_scale=1.0", "data.hflip=false")
    assert s["images"] == 20
    assert rc == 0 and s["steps"] == 50
    losses = _losses(tmp_path / "run")
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.8 * first, (first, last)
    # the same fixed masks on all 20 training images: the trained weights against the
    # initial ones (rebuilt from the run's own config and seed)
    from vitfas.pretrain.mae import (
        ImageDataset,
        PretrainMAEConfig,
        build_mae_transform,
        build_model,
    )
    from vitfas.train.config import load_config
    from vitfas.train.engine import seed_everything

    rcfg = load_config(PretrainMAEConfig, tmp_path / "run" / "config.yaml")
    seed_everything(rcfg.trainer.seed)
    before = build_model(rcfg).eval()
    after = load_mae(tmp_path / "run" / "mae").eval()
    paths = collect_images(man, "train").paths
    ds = ImageDataset(paths, build_mae_transform(False, 32, rcfg.data))
    x = torch.stack([ds[i] for i in range(len(ds))])
    noise = torch.rand(len(ds), 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        l0, l1 = before(x, noise=noise).loss.item(), after(x, noise=noise).loss.item()
    print(f"MAE tiny, 50 steps: fixed-mask loss {l0:.4f} -> {l1:.4f}; "
          f"logged {first:.4f} -> {last:.4f}")
    assert l1 < 0.7 * l0, (l0, l1)


def test_bad_config_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _config(tmp_path)
    assert main(["pretrain-mae", str(cfg), "data.source="]) == 1
    assert "data.source is empty" in capsys.readouterr().err
    assert main(["pretrain-mae", str(cfg), "model.mask_ratioo=0.5"]) == 1
    assert "mask_ratioo" in capsys.readouterr().err
    assert main(["pretrain-mae", str(cfg), f"data.source={tmp_path}",
                 "model.name=vit_tiny_patch16_224"]) == 1
    assert "not an MAE" in capsys.readouterr().err


def test_example_config_loads() -> None:
    from vitfas.pretrain.mae import MAEOptimSection, PretrainMAEConfig
    from vitfas.train.config import load_config

    cfg = load_config(PretrainMAEConfig, "pretrain_mae")  # the shipped example, by name
    assert cfg.model.name == "mae_vit_small_patch16" and cfg.trainer.precision == "bf16"
    assert cfg.optim.lr == pytest.approx(1.5e-4 * cfg.trainer.batch_size / 256)
    # a partial optim section keeps MAE's defaults, not the generic ones
    part = load_config(PretrainMAEConfig, None, ["optim.lr=1e-4"])
    assert isinstance(part.optim, MAEOptimSection) and part.optim.betas == (0.9, 0.95)
