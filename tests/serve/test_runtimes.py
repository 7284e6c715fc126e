"""Inference runtimes: bf16 capability check, onnxruntime session options (no spinning)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from serve_helpers import make_bundle

from vitfas.errors import BadConfigError


@pytest.mark.parametrize(("flags", "ok"), [
    ({"avx2", "fma", "f16c"}, False),
    ({"avx512f", "avx512bw", "avx512_vnni"}, False),   # AVX-512 alone emulates bf16
    ({"avx512f", "avx512_bf16"}, True),
    ({"amx_tile", "amx_bf16"}, True),
])
def test_bf16_support_from_flags(flags, ok):
    from vitfas.predict.runtime import bf16_support

    got, why = bf16_support(flags)
    assert got is ok
    if not ok:
        assert "no native bf16" in why and "slower than fp32" in why
    else:
        assert "native bf16" in why


def test_torch_bf16_refused_without_native_bf16(tmp_path, monkeypatch):
    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor
    from vitfas.predict import runtime as rt

    b = load_bundle(make_bundle(tmp_path / "b"))
    monkeypatch.setattr(rt, "cpu_flags", lambda: {"avx2"})
    monkeypatch.delenv("VITFAS_FORCE_BF16", raising=False)
    with pytest.raises(BadConfigError, match="no native bf16.*onnx-int8"):
        Predictor(b, runtime="torch-bf16")
    # forced (or on a CPU with bf16) it runs: bf16 logits near the fp32 ones
    monkeypatch.setenv("VITFAS_FORCE_BF16", "1")
    p16, p32 = Predictor(b, runtime="torch-bf16"), Predictor(b, runtime="torch")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    d = np.abs(p16.infer(x) - p32.infer(x)).max()
    assert 0 < d < 0.05
    monkeypatch.setattr(rt, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.delenv("VITFAS_FORCE_BF16")
    assert Predictor(b, runtime="torch-bf16").runtime == "torch-bf16"


def test_session_options_turn_spinning_off():
    from vitfas.predict.runtime import ort_session_options

    o = ort_session_options(threads=3)
    assert o.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert o.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert o.intra_op_num_threads == 3 and o.inter_op_num_threads == 1
    n = torch.get_num_threads()
    assert ort_session_options().intra_op_num_threads == n


@pytest.mark.timeout(120)
def test_onnx_session_does_not_burn_cpu_between_calls(tiny_bundle, tmp_path):
    """After a call, two onnxruntime threads with spinning on use ~0.04 s of CPU per 0.2 s
    of idling on this machine; with our options the process stays idle."""
    from vitfas.bundle import load_bundle
    from vitfas.export.onnx import export_onnx
    from vitfas.predict.runtime import onnx_runtime

    b = load_bundle(tiny_bundle)
    path = tmp_path / "m.onnx"
    export_onnx(b, path)
    rt = onnx_runtime(path, threads=2)
    x = np.zeros((8, 3, 32, 32), dtype=np.float32)
    idle = []
    for _ in range(3):
        rt(x)
        c = time.process_time()
        time.sleep(0.2)
        idle.append(time.process_time() - c)
    assert min(idle) < 0.01, idle


def test_runtime_checks_batch_shape(tiny_bundle):
    from vitfas.bundle import load_bundle
    from vitfas.predict.runtime import open_runtime

    rt = open_runtime(load_bundle(tiny_bundle), "torch")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        rt(np.zeros((3, 32, 32), dtype=np.float32))
    assert rt(np.zeros((2, 3, 32, 32), dtype=np.float32)).shape == (2, 2)


def test_predictor_detect_side_maps_boxes_to_the_photo(face_fixtures, tmp_path):
    """The fast face stage detects on a <= 480 px copy of a 1617x2160 photo; the box comes
    back in the photo's pixels and the crop is cut from the full-resolution image."""
    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.data.io import load_image
    from vitfas.predict import Predictor

    b = load_bundle(make_bundle(tmp_path / "b"))
    pre = {**b.preprocessing, "detector": "dlib", "crop_scale": 1.3}
    d = save_bundle(tmp_path / "dlib", b.model, class_names=["spoof", "live"], live_index=1,
                    preprocessing=pre)
    rgb = load_image(face_fixtures / "live_large_1617x2160.jpg")
    ref = Predictor(load_bundle(d)).detect(rgb)
    fast = Predictor(load_bundle(d), detect_side=480)
    assert fast.detector.max_side == 480 and fast.describe()["detect_side"] == 480
    got = fast.detect(rgb)
    assert len(got) == len(ref) == 1
    # the grey 480 px pass found it; the fallback would be the bundle's own detector
    assert fast.detector.last_used == "fast"
    assert fast.detector.full is fast.recipe.face_detector
    (f0, c0), (f1, c1) = ref[0], got[0]
    assert f1.width > 300                       # full-resolution pixels, not the copy's
    x0, y0 = max(f0.box[0], f1.box[0]), max(f0.box[1], f1.box[1])
    x1, y1 = min(f0.box[2], f1.box[2]), min(f0.box[3], f1.box[3])
    inter = (x1 - x0) * (y1 - y0)
    assert inter / (f0.area + f1.area - inter) > 0.5
    assert c1.shape == c0.shape == (32, 32, 3)
