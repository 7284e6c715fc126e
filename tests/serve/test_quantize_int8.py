"""`vitfas export --quantize int8` and `Predictor(runtime="onnx-int8")`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from serve_helpers import PRE, make_bundle, run_cli

from vitfas.errors import BadCheckpointError, BadConfigError


def test_agreement_hand_worked():
    from vitfas.export.quantize import agreement

    ref = np.array([0.10, 0.60, 0.49, 0.90])
    new = np.array([0.12, 0.58, 0.51, 0.90])
    a = agreement(ref, new, threshold=0.5)
    assert a["n"] == 4
    assert a["max_abs_dp"] == pytest.approx(0.02)
    assert a["mean_abs_dp"] == pytest.approx(0.015)
    assert a["identical_decisions"] == pytest.approx(0.75)  # 0.49 -> 0.51 crosses 0.5
    with pytest.raises(ValueError, match=r"\[N\]"):
        agreement(ref, new[:3], 0.5)


def _manifest(d: Path) -> Path:
    """12 train rows (6 live, 6 print), 4 dev rows, one FTA row, one unreadable row."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["path,label,attack_type,dataset,subject,video,frame,split,fta"]
    for i in range(16):
        arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        if i % 2:
            arr[:, :20] = arr[:, :20] // 3  # some structure so the scores spread
        Image.fromarray(arr).save(d / f"c{i}.png")
        live = i % 2 == 0
        rows.append(f"c{i}.png,{'live' if live else 'spoof'},{'' if live else 'print'},syn,s{i},"
                    f",,{'train' if i < 12 else 'dev'},0")
    rows.append("gone.png,spoof,print,syn,s98,,,train,1")  # FTA: no crop was made
    (d / "broken.png").write_bytes(b"not a png")
    rows.append("broken.png,live,,syn,s99,,,train,0")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    return d / "m.csv"


def _export(args: list[str]) -> dict:
    mp = pytest.MonkeyPatch()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert run_cli(["export", *args, "--json"], mp) == 0
    finally:
        mp.undo()
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A tiny bundle with its fp32, dynamic-int8 and static-int8 graphs."""
    d = tmp_path_factory.mktemp("q")
    b = make_bundle(d / "b")
    man = _manifest(d)
    dyn = _export([str(b), "--format", "onnx", "--quantize", "int8",
                   "-o", str(b / "dyn.onnx")])
    sta = _export([str(b), "--quantize", "int8", "--calibrate", str(man)])
    return b, man, dyn, sta


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _int8_initialisers(path: Path) -> int:
    return sum(1 for t in onnx.load(str(path)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8)


@pytest.mark.timeout(300)
def test_dynamic_graph_is_int8_and_keeps_metadata(quantized):
    from vitfas.bundle import load_bundle

    b, _, dyn, sta = quantized
    assert not dyn["fp32"].get("reused")          # first call exported model.onnx
    assert sta["fp32"]["reused"] is True            # second one reused it (same weights)
    q = dyn["int8"]
    assert q["mode"] == "dynamic" and q["per_channel"] and q["calibration"] is None
    assert q["reduce_range"] is True  # 7-bit weights: no int16 saturation without VNNI
    # the default leaves the patch embedding, the head and the attention products in fp32
    assert q["keep_fp32"] == ["patch_embed*", "head", "*/scaled_dot_product_attention"]
    assert q["fp32_nodes"] == ["blocks.0.attn/scaled_dot_product_attention",
                               "blocks.1.attn/scaled_dot_product_attention", "head",
                               "patch_embed.proj"]
    dtypes = _weight_dtypes(Path(q["file"]))
    assert dtypes["node_conv2d"] == onnx.TensorProto.FLOAT
    path = Path(q["file"])
    assert path == b / "dyn.onnx"
    ops = _ops(path)
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops, ops
    assert _int8_initialisers(path) >= 4           # qkv, proj, fc1, fc2 of each block ...
    assert q["bytes"] < 0.5 * q["fp32_bytes"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["vitfas.weights_sha256"] == load_bundle(b).config["weights_sha256"]
    assert json.loads(meta["vitfas.quantization"])["mode"] == "dynamic"
    assert q["check"]["on"] == "32 random images" and q["check"]["n"] == 32


@pytest.mark.timeout(300)
def test_static_calibration_skips_fta_and_unreadable_rows(quantized):
    b, man, _, sta = quantized
    q = sta["int8"]
    assert q["file"] == str(b / "model.int8.onnx")
    assert q["mode"] == "static"
    # 12 readable train rows: the FTA row and the unreadable one are skipped
    assert q["calibration"] == {"manifest": str(man), "split": "train", "rows": 12,
                                "method": "minmax", "format": "qdq"}
    assert q["check"]["n"] == 12 and q["check"]["on"] == "calibration crops"
    ops = _ops(Path(q["file"]))
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # only the GEMMs and the patch convolution are quantized: LayerNorm keeps fp32 weights
    proto = onnx.load(q["file"])
    outs = {o: n.op_type for n in proto.graph.node for o in n.output}
    norms = [n for n in proto.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(outs.get(i) != "DequantizeLinear" for n in norms for i in n.input[1:])
    gemm_weights = [n.input[1] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert sum(outs.get(w) == "DequantizeLinear" for w in gemm_weights) >= 4


@pytest.mark.timeout(300)
def test_report_matches_predictor_scores(quantized):
    """The export's |dP| figure is what Predictor's two runtimes give on the same crops."""
    from vitfas.bundle import load_bundle
    from vitfas.export.quantize import agreement, calibration_batches
    from vitfas.predict import Predictor

    b, man, _, sta = quantized
    bundle = load_bundle(b)
    fp32 = Predictor(bundle, runtime="torch")
    int8 = Predictor(bundle, runtime="onnx-int8")
    assert int8.describe()["runtime_info"]["quantization"]["mode"] == "static"
    xs = np.concatenate(calibration_batches(bundle, man, "train", 128))
    a = agreement(fp32.infer(xs)[:, 1], int8.infer(xs)[:, 1], bundle.threshold)
    assert a["max_abs_dp"] == pytest.approx(sta["int8"]["check"]["max_abs_dp"], abs=1e-6)
    assert a["identical_decisions"] == sta["int8"]["check"]["identical_decisions"]
    assert a["max_abs_dp"] < 0.05   # int8 is close to fp32 on this small model
    assert a["max_abs_dp"] > 0      # and it did change the arithmetic


@pytest.mark.timeout(300)
def test_predict_cli_runtime_onnx_int8(quantized, image_dir, tmp_path, monkeypatch):
    b, _, _, _ = quantized
    out_t, out_q = tmp_path / "t.jsonl", tmp_path / "q.jsonl"
    assert run_cli(["-q", "predict", str(b), str(image_dir), "-o", str(out_t)], monkeypatch) == 0
    assert run_cli(["-q", "predict", str(b), str(image_dir), "-o", str(out_q),
                    "--runtime", "onnx-int8"], monkeypatch) == 0
    t = [json.loads(x) for x in out_t.read_text().splitlines()]
    q = [json.loads(x) for x in out_q.read_text().splitlines()]
    assert len(t) == len(q) == 4
    for a, c in zip(t, q):
        assert c["status"] == "ok"
        assert abs(a["score"] - c["score"]) < 0.05


def test_missing_int8_graph_names_the_command(tmp_path):
    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor

    b = load_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(BadCheckpointError, match="--quantize int8"):
        Predictor(b, runtime="onnx-int8")
    with pytest.raises(BadConfigError, match="runtime must be one of"):
        Predictor(b, runtime="tensorrt")


@pytest.mark.timeout(300)
def test_int8_graph_of_other_weights_is_refused(quantized, tmp_path):
    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.predict import Predictor

    b, _, _, _ = quantized
    other = load_bundle(b)
    with __import__("torch").no_grad():
        other.model.head.bias.add_(1.0)
    d = save_bundle(tmp_path / "other", other.model, class_names=["spoof", "live"],
                    live_index=1, preprocessing=dict(PRE))
    with pytest.raises(BadCheckpointError, match="other weights"):
        Predictor(load_bundle(d), runtime="onnx-int8", onnx_path=b / "model.int8.onnx")


def test_calibrate_without_quantize_is_an_error(tiny_bundle, tmp_path, monkeypatch, capsys):
    rc = run_cli(["export", str(tiny_bundle), "--calibrate", str(tmp_path / "m.csv")],
                 monkeypatch)
    assert rc != 0
    assert "--calibrate is for int8 quantization: add --quantize int8" in capsys.readouterr().err


def _weight_dtypes(path: Path) -> dict[str, int]:
    """node name -> data type of its weight initialiser, for MatMul / Gemm / Conv nodes
    whose second input is an initialiser (an fp32 GEMM left as it was)."""
    g = onnx.load(str(path)).graph
    inits = {t.name: t.data_type for t in g.initializer}
    return {n.name: inits[n.input[1]] for n in g.node
            if n.op_type in ("MatMul", "Gemm", "Conv") and n.input[1] in inits}


@pytest.mark.timeout(300)
def test_keep_fp32_leaves_the_named_nodes_in_fp32(tmp_path):
    """`--keep-fp32 head 'blocks.0.mlp.*'`: exactly those GEMMs keep fp32 weights in the
    written graph, every other weight GEMM is int8, and the reported |dP| is what the
    fp32 model and the written graph give on the same images."""
    from vitfas.bundle import load_bundle
    from vitfas.export.quantize import quantizable_nodes, random_batches
    from vitfas.metrics.calibration import scaled_softmax
    from vitfas.predict.runtime import onnx_runtime, torch_runtime

    b = make_bundle(tmp_path / "b")
    out = _export([str(b), "--quantize", "int8", "--keep-fp32", "head", "blocks.0.mlp.*",
                   "-o", str(tmp_path / "k.onnx")])["int8"]
    assert out["keep_fp32"] == ["head", "blocks.0.mlp.*"]
    assert out["fp32_nodes"] == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head"]
    nodes = {n["label"]: n for n in quantizable_nodes(b / "model.onnx") if n["weighted"]}
    assert {"blocks.0.mlp.fc1", "blocks.1.mlp.fc2", "blocks.1.attn.qkv", "head",
            "patch_embed.proj"} <= set(nodes)
    kept = {nodes[k]["name"] for k in out["fp32_nodes"]}
    # (dynamic quantization rewrites the Gemm head as a MatMul named NAME_MatMul)
    float_gemms = {k.removesuffix("_MatMul") for k, t in
                   _weight_dtypes(Path(out["file"])).items() if t == onnx.TensorProto.FLOAT}
    assert float_gemms == kept, (float_gemms, kept)
    # the other weight GEMMs were quantized: 2 blocks x 4 + patch embedding - 2 kept
    assert _int8_initialisers(Path(out["file"])) >= 2 * 4 + 1 - 2
    # the report's figure, recomputed: fp32 PyTorch vs the written graph, same images
    bundle = load_bundle(b)
    xs = random_batches(bundle, 32, seed=0)
    t, q = torch_runtime(bundle.model), onnx_runtime(out["file"], 1)
    p_t = np.array([scaled_softmax(t(x).astype(np.float64), 1.0)[0, 1] for x in xs])
    p_q = np.array([scaled_softmax(q(x).astype(np.float64), 1.0)[0, 1] for x in xs])
    assert out["check"]["max_abs_dp"] == pytest.approx(np.abs(p_q - p_t).max(), abs=1e-6)
    assert out["check"]["mean_abs_dp"] == pytest.approx(np.abs(p_q - p_t).mean(), abs=1e-6)
    assert 0 < out["check"]["max_abs_dp"] < 0.05


@pytest.mark.timeout(300)
def test_keep_fp32_pattern_that_matches_nothing_is_an_error(tmp_path, monkeypatch, capsys):
    b = make_bundle(tmp_path / "b")
    # `--keep-fp32` with no pattern: every GEMM quantized, the patch convolution too
    every = _export([str(b), "--quantize", "int8", "--keep-fp32", "-o", str(tmp_path / "a.onnx")])
    assert every["int8"]["fp32_nodes"] == []
    assert not any(t == onnx.TensorProto.FLOAT
                   for t in _weight_dtypes(Path(every["int8"]["file"])).values())
    rc = run_cli(["export", str(b), "--quantize", "int8", "--keep-fp32", "blocks.9.*"],
                 monkeypatch)
    assert rc != 0
    err = capsys.readouterr().err
    assert "'blocks.9.*' matches no quantizable node" in err and "blocks.1.mlp.fc2" in err


@pytest.mark.timeout(300)
def test_dynamic_int8_score_does_not_depend_on_the_batch(quantized):
    """A dynamic int8 graph computes activation ranges per call; the runtime runs it row
    by row, so a crop scores the same alone and next to a crop of extreme pixels."""
    from vitfas.predict.runtime import onnx_runtime

    _, _, dyn, _ = quantized
    rt = onnx_runtime(dyn["int8"]["file"], 1, name="onnx-int8")
    assert rt.info["rows_per_call"] == 1
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
    loud = np.full((1, 3, 32, 32), 40.0, np.float32)  # far outside the normalised range
    alone = rt(x)
    together = rt(np.concatenate([x, loud]))
    assert together.shape == (2, 2)
    np.testing.assert_array_equal(together[:1], alone)
    # the graph itself, fed both rows in one call, would have scored x differently
    raw = rt.session.run(None, {"image": np.concatenate([x, loud])})[0]
    assert np.abs(raw[:1] - alone).max() > 1e-4


@pytest.mark.timeout(300)
def test_static_qoperator_format_writes_qlinear_ops(quantized, tmp_path):
    """`--static-format qoperator`: the GEMMs become QLinearMatMul / QLinearConv ops, the
    report says so, and the scores match the QDQ graph's closely (same ranges)."""
    from vitfas.bundle import load_bundle
    from vitfas.export.quantize import calibration_batches, quantize_int8
    from vitfas.predict.runtime import onnx_runtime

    b, man, _, sta = quantized
    bundle = load_bundle(b)
    cal = calibration_batches(bundle, man, "train", 128)
    rep = quantize_int8(bundle, b / "model.onnx", tmp_path / "qop.onnx", cal,
                        static_format="qoperator")
    assert rep["calibration"]["format"] == "qoperator"
    ops = _ops(tmp_path / "qop.onnx")
    assert "QLinearMatMul" in ops and "DequantizeLinear" in ops  # back to fp32 after
    x = np.concatenate(cal)
    a = onnx_runtime(tmp_path / "qop.onnx", 1)(x)
    q = onnx_runtime(sta["int8"]["file"], 1)(x)
    assert np.abs(a - q).max() < 0.05
    with pytest.raises(BadConfigError, match="static int8 format"):
        quantize_int8(bundle, b / "model.onnx", tmp_path / "x.onnx", cal, static_format="qd")
