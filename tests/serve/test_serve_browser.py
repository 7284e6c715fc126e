"""The web page end to end in headless Chromium, driven over the DevTools protocol.

Skips cleanly when no ``chromium`` binary is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
pytest.importorskip("websocket", reason="websocket-client (dev dependency) is not installed")


class CDP:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def send(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr: str):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.1)
        err = self.eval("(document.getElementById('error') || {}).textContent")
        raise TimeoutError(f"waited {timeout} s for {expr}; page error: {err!r}")

    def close(self) -> None:
        self.ws.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tiny_bundle):
    import uvicorn

    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor
    from vitfas.serve.app import create_app

    port = _free_port()
    app = create_app(Predictor(load_bundle(tiny_bundle)))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    end = time.monotonic() + 30
    while not srv.started and time.monotonic() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


def _chromium(tmp_path: Path, extra: list[str]):
    """Headless Chromium driven over CDP (its first page); ``extra`` command-line flags."""
    profile = tmp_path / "profile"
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--window-size=1100,1000", *extra, "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > end or proc.poll() is not None:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        cdp = CDP(pages[0]["webSocketDebuggerUrl"])
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def browser(tmp_path):
    yield from _chromium(tmp_path, [])


@pytest.fixture()
def offline_browser(tmp_path):
    """Chromium that can reach 127.0.0.1 only: every other host name fails to resolve, so
    a page that needs a CDN stays blank."""
    yield from _chromium(tmp_path, ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                    "--proxy-server=direct://"])


def _fixture_image(shared: Path | None, tmp_path: Path) -> Path:
    if shared is not None and (shared / "fixtures/faces/live_exif6.jpg").is_file():
        return shared / "fixtures/faces/live_exif6.jpg"
    from PIL import Image

    p = tmp_path / "face.jpg"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)).save(p)
    return p


def test_web_page_upload_and_webcam(server, browser, tmp_path):
    env = os.environ.get("VITFAS_SHARED")
    shared = Path(env) if env else Path(__file__).resolve().parents[3] / "shared"
    image = _fixture_image(shared if shared.is_dir() else None, tmp_path)
    api = httpx.post(f"{server}/v1/liveness?explain=1",
                     files={"file": (image.name, image.read_bytes(), "image/jpeg")},
                     timeout=60).json()

    cdp = browser
    cdp.send("Page.enable")
    cdp.send("Runtime.enable")
    cdp.send("Page.navigate", url=server + "/")
    cdp.wait_for("document.body && document.body.dataset.ready === '1'")
    assert "vit_tiny_patch16_224" in cdp.eval("document.getElementById('model').textContent")

    # choose the file through the page's own <input type=file>
    doc = cdp.send("DOM.getDocument")
    node = cdp.send("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#file")
    cdp.send("DOM.setFileInputFiles", files=[str(image)], nodeId=node["nodeId"])
    cdp.wait_for("document.body.dataset.done === '1'", timeout=60)

    shown = cdp.eval("document.getElementById('score').textContent")
    raw = float(cdp.eval("document.getElementById('score').dataset.score"))
    assert raw == pytest.approx(api["score"], abs=1e-9)
    assert shown == f"{api['score']:.4f}"
    assert cdp.eval("document.getElementById('decision').textContent") == api["decision"]
    assert cdp.eval("document.getElementById('error').hidden") is True
    # the canvas shows the upright image (EXIF applied) and the overlay image is there
    assert cdp.eval("[$('canvas').width, $('canvas').height]") == api["image_size"]
    assert cdp.eval("document.querySelectorAll('img.overlay').length") == len(api["faces"])
    assert cdp.eval("document.querySelector('img.overlay').naturalWidth") == 32
    # a box was drawn: the canvas' top-left pixel carries the box colour, not the photo
    px = cdp.eval("Array.from($('canvas').getContext('2d').getImageData(1, 1, 1, 1).data)")
    assert px[:3] in ([30, 142, 62], [197, 34, 31]), px

    shot = cdp.send("Page.captureScreenshot", format="png")
    out = Path(os.environ.get("VITFAS_SCREENSHOT_DIR", tmp_path)) / "web_page.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 5000

    # a bad file shows the API's error, then the webcam path (Chromium's fake camera)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    cdp.send("DOM.setFileInputFiles", files=[str(bad)], nodeId=node["nodeId"])
    cdp.wait_for("!document.getElementById('error').hidden")
    assert cdp.eval("document.getElementById('error').textContent").startswith("422")
    cdp.eval("document.getElementById('camera').click()")
    cdp.wait_for("document.getElementById('video').videoWidth > 0")
    cdp.eval("document.getElementById('snap').click()")
    cdp.wait_for("document.body.dataset.done === '2'", timeout=60)
    assert cdp.eval("document.getElementById('status').textContent").startswith("snapshot.jpg")
    assert 0.0 <= float(cdp.eval("document.getElementById('score').dataset.score")) <= 1.0


@pytest.mark.timeout(180)
def test_api_docs_render_without_network(server, offline_browser):
    """``/docs`` (Swagger UI) and ``/redoc`` load their scripts from the service itself and
    render the API (the page links to /docs)."""
    cdp = offline_browser
    cdp.send("Page.enable")
    cdp.send("Runtime.enable")
    cdp.send("Page.navigate", url=server + "/docs")
    cdp.wait_for("typeof SwaggerUIBundle === 'function'")
    cdp.wait_for("document.querySelectorAll('.opblock').length > 0", timeout=60)
    assert "vitfas liveness" in cdp.eval("document.querySelector('.info .title').textContent")
    paths = cdp.eval("Array.from(document.querySelectorAll('.opblock-summary-path'))"
                     ".map(e => e.textContent)")
    assert "/v1/liveness" in paths
    cdp.send("Page.navigate", url=server + "/redoc")
    cdp.wait_for("typeof Redoc === 'object'")
    cdp.wait_for("document.body.innerText.includes('Score every face in an uploaded image')",
                 timeout=60)
    assert "vitfas liveness" in cdp.eval("document.querySelector('h1').textContent")
