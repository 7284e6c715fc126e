"""`vitfas export --format onnx` and `predict --runtime onnx`."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from serve_helpers import make_bundle, run_cli


@pytest.fixture(scope="module")
def exported(tiny_bundle, tmp_path_factory):
    """``vitfas export`` of the tiny bundle: (onnx path, printed text)."""
    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    mp = pytest.MonkeyPatch()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = run_cli(["export", str(tiny_bundle), "--format", "onnx", "-o", str(out)], mp)
    finally:
        mp.undo()
    assert rc == 0
    return out, buf.getvalue()


def test_export_checks_and_dynamic_batch(tiny_bundle, exported):
    from vitfas.bundle import load_bundle

    out, text = exported
    assert "max |diff|" in text and "check passed" in text
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    b = load_bundle(tiny_bundle)
    assert meta["vitfas.weights_sha256"] == b.config["weights_sha256"]
    assert json.loads(meta["vitfas.class_names"]) == ["spoof", "live"]
    # independent run on batch sizes other than the export's (2), fused attention inside
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for bs in (1, 5):
        x = torch.randn(bs, 3, 32, 32)
        with torch.no_grad():
            ref = b.model(x).numpy()
        got = sess.run(["logits"], {"image": x.numpy()})[0]
        assert got.shape == (bs, 2)
        np.testing.assert_allclose(got, ref, atol=1e-4)
    # a fixed-size model rejects another image size
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own error types
        sess.run(None, {"image": np.zeros((1, 3, 40, 40), np.float32)})


def test_export_dynamic_image_size(tmp_path, monkeypatch, capsys):
    from vitfas.bundle import load_bundle

    bdir = make_bundle(tmp_path / "dyn", dynamic=True)
    assert run_cli(["export", str(bdir), "--json"], monkeypatch) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["dynamic_axes"] == ["batch", "height", "width"] and rep["ok"]
    assert rep["max_abs_diff"] <= 1e-4
    b = load_bundle(bdir)
    sess = ort.InferenceSession(str(bdir / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 32, 32), (4, 3, 48, 24), (2, 3, 16, 40)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = b.model(x).numpy()
        np.testing.assert_allclose(sess.run(None, {"image": x.numpy()})[0], ref, atol=1e-4)


def test_predict_runtime_onnx_matches_torch(tiny_bundle, exported, image_dir, tmp_path,
                                            monkeypatch):
    onnx_path = exported[0]
    outs = {}
    for rt in ("torch", "onnx"):
        o = tmp_path / f"{rt}.jsonl"
        argv = ["-q", "predict", str(tiny_bundle), str(image_dir), "-o", str(o),
                "--runtime", rt, "--onnx", str(onnx_path)]
        assert run_cli(argv, monkeypatch) == 0
        outs[rt] = [json.loads(line) for line in o.read_text().splitlines()]
    assert len(outs["onnx"]) == 4
    for a, b in zip(outs["torch"], outs["onnx"]):
        assert a["path"] == b["path"] and a["decision"] == b["decision"]
        assert b["score"] == pytest.approx(a["score"], abs=1e-5)


def test_onnx_missing_or_stale_is_a_clear_error(tiny_bundle, exported, image_dir, tmp_path,
                                                monkeypatch, capsys):
    import shutil

    rc = run_cli(["-q", "predict", str(tiny_bundle), str(image_dir), "--runtime", "onnx",
                  "--onnx", str(tmp_path / "none.onnx")], monkeypatch)
    assert rc == 1
    assert "vitfas export" in capsys.readouterr().err
    # a bundle with other weights (its recorded hash differs) refuses this graph
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["weights_sha256"] = "0" * 64
    (other / "config.json").write_text(json.dumps(cfg))
    rc = run_cli(["-q", "predict", str(other), str(image_dir), "--runtime", "onnx",
                  "--onnx", str(exported[0])], monkeypatch)
    assert rc == 1
    assert "export again" in capsys.readouterr().err


def test_large_models_keep_weights_beside_the_graph(tiny_bundle, tmp_path, monkeypatch):
    """Over the size limit the weights go to OUT.data (protobuf's 2 GB cap); still checked."""
    from vitfas.bundle import load_bundle
    from vitfas.export import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "big" / "m.onnx"
    rep = onnx_export.export_onnx(load_bundle(tiny_bundle), out)
    assert rep["ok"] and (tmp_path / "big" / "m.onnx.data").stat().st_size > 200_000


@pytest.mark.parametrize("name,kw", [
    ("deit_tiny_distilled_patch16_224",
     {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}),
    ("swin_tiny_patch4_window7_224",
     {"img_size": 56, "embed_dim": 16, "depths": (2, 2), "num_heads": (1, 2)}),
])
def test_other_families_predict_and_export(name, kw, tmp_path, image_dir):
    """DeiT (distillation token, two heads) and Swin bundles: the Predictor and the ONNX
    graph agree."""
    from serve_helpers import PRE

    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.export.onnx import export_onnx
    from vitfas.models import create_model
    from vitfas.predict import Predictor, load_image

    m = create_model(name, num_classes=2, **kw)
    pre = {**PRE, "img_size": [kw["img_size"]] * 2}
    b = save_bundle(tmp_path / name, m, class_names=["spoof", "live"], live_index=1,
                    preprocessing=pre)
    rep = export_onnx(load_bundle(b), b / "model.onnx")
    assert rep["ok"] and rep["max_abs_diff"] <= 1e-4
    rgb = load_image(image_dir / "img2.jpg")
    st = Predictor(load_bundle(b)).predict_image(rgb)[0].score
    so = Predictor(load_bundle(b), runtime="onnx").predict_image(rgb)[0].score
    assert so == pytest.approx(st, abs=1e-5)
