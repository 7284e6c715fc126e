"""The HTTP API through the ASGI test client: answers, micro-batching, limits, fuzzing."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from vitfas.data.io import max_pixels


@pytest.fixture()
def predictor(tiny_bundle):
    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor

    return Predictor(load_bundle(tiny_bundle))


def _app(predictor, **kw):
    from vitfas.serve.app import ServeSettings, create_app

    return create_app(predictor, ServeSettings(**kw))


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (24 + 4 * (i % 5), 40, 3), dtype=np.uint8) // (1 + i % 4)
            for i in range(n)]


def test_liveness_answer_matches_predictor(predictor, image_dir):
    from vitfas.predict import load_image

    c = _client(_app(predictor))
    path = image_dir / "img0.jpg"
    r = c.post("/v1/liveness", files={"file": ("img0.jpg", path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    want = predictor.predict_image(load_image(path))
    assert body["model_id"] == predictor.model_id
    assert len(body["faces"]) == len(want) == 1
    assert body["faces"][0]["score"] == pytest.approx(want[0].score, abs=1e-5)
    assert body["score"] == body["faces"][0]["score"]
    assert body["decision"] == want[0].decision
    assert body["threshold"] == 0.5 and body["latency_ms"] > 0
    h, w = load_image(path).shape[:2]
    assert body["image_size"] == [w, h]
    assert c.get("/healthz").json() == {"status": "ok", "model_id": predictor.model_id}
    info = c.get("/v1/model").json()
    assert info["class_names"] == ["spoof", "live"] and info["live_index"] == 1
    assert info["limits"]["max_pixels"] == max_pixels()


def test_exif_rotation_through_api(predictor, face_fixtures):
    c = _client(_app(predictor))
    data = (face_fixtures / "live_exif6.jpg").read_bytes()
    body = c.post("/v1/liveness", files={"file": ("a.jpg", data, "image/jpeg")}).json()
    assert body["image_size"] == [480, 640]  # stored 640x480 with EXIF orientation 6
    assert body["faces"] and 0.0 <= body["score"] <= 1.0


def test_explain_overlay(predictor, image_dir):
    c = _client(_app(predictor))
    data = (image_dir / "img1.png").read_bytes()
    body = c.post("/v1/liveness?explain=1", files={"file": ("x.png", data, "image/png")}).json()
    png = base64.b64decode(body["faces"][0]["explain_png"])
    im = np.asarray(Image.open(io.BytesIO(png)))
    assert im.shape == (32, 32, 3) and im.std() > 1
    plain = c.post("/v1/liveness", files={"file": ("x.png", data, "image/png")}).json()
    assert plain["faces"][0]["explain_png"] is None
    assert plain["score"] == pytest.approx(body["score"], abs=1e-6)
    # a model that cannot be explained still gets its scores, with the reason
    def no_attention(crop):
        raise ValueError("this model returns no attention weights")

    predictor.explain_png = no_attention
    body = c.post("/v1/liveness?explain=1", files={"file": ("x.png", data, "image/png")})
    assert body.status_code == 200
    assert "no attention" in body.json()["explain_error"]
    assert body.json()["score"] == pytest.approx(plain["score"], abs=1e-6)


def test_burst_is_micro_batched_and_answers_are_right(predictor):
    """16 concurrent requests are served in fewer forward calls, each with its own answer."""
    app = _app(predictor, max_wait_ms=300, max_batch=64)
    ims = _images(16)
    want = [predictor.predict_image(im)[0].score for im in ims]
    calls0 = predictor.forward_calls

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*[
                client.post("/v1/liveness", files={"file": (f"{i}.png", _png(im), "image/png")})
                for i, im in enumerate(ims)
            ])

    rs = asyncio.run(burst())
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    got = [r.json()["score"] for r in rs]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(set(np.round(want, 6))) > 8, "the images should score differently"
    b = app.state.batcher
    calls = predictor.forward_calls - calls0
    assert b.items == 16 and b.batches == calls
    assert calls < 16, f"{calls} forward calls for 16 requests: no batching"
    assert max(b.batch_sizes) > 1


def test_max_batch_is_respected(predictor):
    app = _app(predictor, max_wait_ms=200, max_batch=3)
    ims = _images(9)
    want = [predictor.predict_image(im)[0].score for im in ims]

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*[
                client.post("/v1/liveness", files={"file": ("x.png", _png(im), "image/png")})
                for im in ims
            ])

    rs = asyncio.run(burst())
    np.testing.assert_allclose([r.json()["score"] for r in rs], want, atol=1e-5)
    assert max(app.state.batcher.batch_sizes) <= 3


def test_fuzz_bad_uploads_never_take_the_worker_down(predictor, image_dir, bomb_png):
    app = _app(predictor, max_upload_bytes=300_000, max_pixels=1_000_000)
    c = _client(app)
    good = (image_dir / "img0.jpg").read_bytes()
    big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    cases = {
        "zero bytes": (b"", "image/jpeg", {422}),
        "truncated jpeg": (good[:200], "image/jpeg", {422}),
        "half a jpeg": (good[: len(good) // 2], "image/jpeg", {200, 422}),
        "text named .jpg": (b"hello, I am not a picture\n" * 20, "image/jpeg", {422}),
        "random bytes": (np.random.default_rng(1).bytes(5000), "image/png", {422}),
        "wrong content type": (good, "text/plain", {415}),
        "pdf content type": (good, "application/pdf", {415}),
        "gif format": (gif.getvalue(), "image/gif", {415}),
        "gif sent as png": (gif.getvalue(), "image/png", {415}),
        "decompression bomb png": (bomb_png(30_000, 30_000), "image/png", {413}),
        "bomb under PIL's own limit": (bomb_png(3000, 3000), "image/png", {413}),
        "too many bytes": (_png(big), "image/png", {413}),
        "png header then garbage": (bomb_png(64, 64)[:40] + b"\xff" * 500, "image/png",
                                    {422}),
    }
    for what, (data, ctype, codes) in cases.items():
        r = c.post("/v1/liveness", files={"file": ("x.jpg", data, ctype)})
        assert r.status_code in codes, (what, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], what
    # a raw image body (not multipart): 415 saying how to send it
    r = c.post("/v1/liveness", content=good, headers={"content-type": "image/jpeg"})
    assert r.status_code == 415, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "image/jpeg body" in detail
    assert "multipart/form-data field 'file'" in detail
    # multipart without the file field: 422, one sentence naming the field
    r = c.post("/v1/liveness", data={"x": "1"})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and "missing field 'file'" in r.json()["detail"]
    # a bad query value, an unknown path, a wrong method: {"detail": "<text>"} too
    for r in (c.post("/v1/liveness?explain=maybe", files={"file": ("x.jpg", good,
                                                                   "image/jpeg")}),
              c.get("/no/such/page"), c.get("/v1/liveness")):
        assert r.status_code in (404, 405, 422), r.text
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], r.text
    # an enormous declared body is refused before it is read
    r = c.post("/v1/liveness", content=b"x" * 10, headers={"content-length": str(10**9),
                                                           "content-type": "image/jpeg"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]
    # so is a chunked body (no Content-Length) once it streams past the limit

    def chunks():
        for _ in range(100):
            yield b"\xff" * 10_000

    r = c.post("/v1/liveness", content=chunks(),
               headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "of more than" in r.json()["detail"]
    # the service is still fine
    r = c.post("/v1/liveness", files={"file": ("ok.jpg", good, "image/jpeg")})
    assert r.status_code == 200 and r.json()["faces"]
    assert c.get("/healthz").status_code == 200


def test_internal_error_and_timeout_are_json_and_survivable(predictor, image_dir,
                                                            monkeypatch):
    good = (image_dir / "img1.png").read_bytes()
    app = _app(predictor, request_timeout_s=0.3)
    c = _client(app)
    orig = predictor.detect

    def boom(rgb):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(predictor, "detect", boom)
    r = c.post("/v1/liveness", files={"file": ("a.png", good, "image/png")})
    assert r.status_code == 500 and "RuntimeError" in r.json()["detail"]

    def slow(rgb):
        time.sleep(1.0)
        return orig(rgb)

    monkeypatch.setattr(predictor, "detect", slow)
    r = c.post("/v1/liveness", files={"file": ("a.png", good, "image/png")})
    assert r.status_code == 504 and "longer than" in r.json()["detail"]
    monkeypatch.setattr(predictor, "detect", orig)
    time.sleep(0.8)  # let the slow thread finish
    r = c.post("/v1/liveness", files={"file": ("a.png", good, "image/png")})
    assert r.status_code == 200


def test_failed_batch_fails_only_its_requests(predictor, image_dir, monkeypatch):
    app = _app(predictor)
    c = _client(app)
    good = (image_dir / "img1.png").read_bytes()
    orig = predictor.predict_crops
    monkeypatch.setattr(predictor, "predict_crops",
                        lambda items: (_ for _ in ()).throw(RuntimeError("bad batch")))
    assert c.post("/v1/liveness", files={"file": ("a.png", good, "image/png")}).status_code \
        == 500
    monkeypatch.setattr(predictor, "predict_crops", orig)
    assert c.post("/v1/liveness", files={"file": ("a.png", good, "image/png")}).status_code \
        == 200


def test_openapi_lists_endpoints(predictor):
    c = _client(_app(predictor))
    spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/liveness", "/healthz", "/v1/model"} <= set(paths)
    post = paths["/v1/liveness"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"200", "413", "415", "422"} <= set(post["responses"])
    assert "/" not in paths
    assert c.get("/docs").status_code == 200


def test_vitfas_serve_command(tiny_bundle, image_dir):
    """`vitfas serve BUNDLE --port N` as a user runs it: a real uvicorn process."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitfas", "-q", "serve", str(tiny_bundle), "--port", str(port),
         "--max-upload-mb", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"vitfas serve did not come up (exit {proc.poll()}):\n{out}")
            time.sleep(0.3)
        good = (image_dir / "img3.png").read_bytes()
        r = httpx.post(base + "/v1/liveness", files={"file": ("a.png", good, "image/png")},
                       timeout=30)
        assert r.status_code == 200 and r.json()["faces"]
        assert httpx.get(base + "/v1/model").json()["limits"]["max_upload_bytes"] == 524288
        assert "vitfas liveness check" in httpx.get(base + "/").text
        assert httpx.get(base + "/static/app.js").status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_docs_pages_use_packaged_assets_not_a_cdn(predictor):
    c = _client(_app(predictor))
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = c.get(page)
        assert r.status_code == 200
        assert "cdn." not in r.text and "https://" not in r.text.split("<body")[-1], page
        src = next(x for x in r.text.split('"') if x.endswith(asset))
        js = c.get(src)
        assert js.status_code == 200 and len(js.content) > 100_000, (page, src)
