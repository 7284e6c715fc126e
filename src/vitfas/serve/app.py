"""The liveness HTTP service: FastAPI app, micro-batching, upload limits, web page.

Endpoints:
    ``POST /v1/liveness`` (multipart ``file``; ``?explain=1`` adds attention overlays) ->
    faces with boxes, P(live) scores and decisions, the model id and the latency;
    ``GET /healthz``; ``GET /v1/model``; ``GET /`` the web page; ``GET /openapi.json``, with
Swagger UI at ``/docs`` and ReDoc at ``/redoc`` served from the package (``fastapi-offline``:
no CDN, so they work on a machine without internet).

Each request is decoded and its faces cropped in a worker thread; the crops then wait in an
asyncio queue for at most ``max_wait_ms`` so concurrent requests share one forward call of
up to ``max_batch`` crops (:class:`MicroBatcher`). Bad uploads get JSON errors: 413 (too
many bytes or pixels), 415 (not an image type, or a raw image body instead of multipart),
422 (undecodable, or no ``file`` field), 504 (timeout); every error body is
``{"detail": "<text>"}`` and no upload can take the worker down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vitfas.errors import VitfasError
from vitfas.predict import Predictor, decode_image

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/x-ms-bmp",
                 "application/octet-stream")


def _default_max_pixels() -> int:
    from vitfas.data.io import max_pixels

    return max_pixels()


@dataclass
class ServeSettings:
    """Limits and batching knobs of the service.

    Attributes:
        max_upload_bytes: the largest accepted upload (413 above).
        max_pixels: the largest accepted width x height, read from the header before any
            decoding (413 above) -- this is what stops decompression bombs; default the
            process-wide limit :func:`vitfas.data.io.max_pixels` (``VITFAS_MAX_PIXELS``).
        request_timeout_s: per-request deadline (504 after).
        max_batch: most crops per forward call.
        max_wait_ms: how long the first queued crop waits for company.
        allow_explain: whether ``?explain=1`` is honoured.
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = field(default_factory=_default_max_pixels)
    request_timeout_s: float = 15.0
    max_batch: int = 16
    max_wait_ms: float = 5.0
    allow_explain: bool = True


class MicroBatcher:
    """Collect work items from concurrent requests and run them in batches.

    ``run_batch(items) -> results`` runs in a worker thread with up to ``max_batch`` items
    (an item may weigh more than one, e.g. the crops of an image with several faces). The
    first item in an empty queue waits at most ``max_wait_ms`` for others. A failing batch
    fails only its own requests.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        weight: Callable[[Any], int] = lambda item: 1,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.weight = weight
        self.batches = 0
        self.items = 0
        self.batch_sizes: list[int] = []
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_started(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._worker(self._queue), name="vitfas-batcher")
        assert self._queue is not None
        return self._queue

    async def submit(self, item: Any) -> Any:
        """Queue ``item`` and wait for its result."""
        queue = self._ensure_started()
        fut = asyncio.get_running_loop().create_future()
        await queue.put((item, fut))
        return await fut

    async def _worker(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            batch = [first]
            load = self.weight(first[0])
            deadline = loop.time() + self.max_wait
            while load < self.max_batch:
                try:
                    nxt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(queue.get(), left)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
                w = self.weight(nxt[0])
                if load + w > self.max_batch:  # keep it for the next batch
                    await self._run(loop, batch)
                    batch, load = [nxt], w
                    deadline = loop.time() + self.max_wait
                    continue
                batch.append(nxt)
                load += w
            await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, Any]]) -> None:
        live = [(it, f) for it, f in batch if not f.cancelled()]
        if not live:
            return
        self.batches += 1
        self.items += len(live)
        self.batch_sizes.append(len(live))
        try:
            results = await loop.run_in_executor(None, self.run_batch, [it for it, _ in live])
        except Exception as exc:  # this batch's requests fail; the worker goes on
            log.exception("batch of %d failed", len(live))
            for _, f in live:
                if not f.done():
                    f.set_exception(exc)
            return
        for (_, f), r in zip(live, results):
            if not f.done():
                f.set_result(r)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "items": self.items,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000}


class FaceOut(BaseModel):
    """One face in a ``POST /v1/liveness`` answer."""

    box: list[float] = Field(description="[x0, y0, x1, y1] in pixels of the upright image")
    detector_score: float | None
    score: float = Field(description="P(live) for FAS models")
    decision: str = Field(description="'live' when score >= threshold, else the spoof "
                                      "class")
    probs: dict[str, float]
    landmarks: list[list[float]] | None = None
    explain_png: str | None = Field(None, description="base64 PNG: attention rollout "
                                                      "over the face crop (?explain=1)")

class LivenessResponse(BaseModel):
    """The answer of ``POST /v1/liveness``."""

    model_id: str
    faces: list[FaceOut]
    score: float | None = Field(description="the largest face's score")
    decision: str = Field(description="the largest face's decision, or 'no_face'")
    threshold: float
    image_size: list[int] = Field(description="[width, height] after EXIF rotation")
    explain_error: str | None = Field(None, description="why ?explain=1 gave no overlay")
    latency_ms: float

class ErrorResponse(BaseModel):
    """Every error answer: a JSON object with a human-readable ``detail``."""

    detail: str


MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers on top of the file itself


class _BodyTooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with a JSON 413.

    A declared ``Content-Length`` over the limit is refused before anything is read; a
    chunked body is counted as it streams in and cut off once it passes the limit (the
    app's own answer is dropped and replaced by the 413).
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def _reject(self, send: Any, what: str) -> None:
        body = json.dumps({"detail": f"request body {what} exceeds the limit of "
                                     f"{self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._reject(send, f"of {int(declared)} bytes")
            return
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Any:
            nonlocal seen, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _BodyTooLargeError()
            return msg

        async def guarded_send(msg: Any) -> None:
            nonlocal started
            if exceeded:
                return
            started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._reject(send, f"of more than {seen} bytes")


class UploadError(Exception):
    """An upload rejected with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_image_header(data: bytes, name: str, max_pixels: int) -> tuple[str, int, int]:
    """Read only the header (:func:`vitfas.data.io.image_header`): format and size; rejects
    non-images (422), formats outside :data:`ALLOWED_FORMATS` (415) and too many pixels
    (413) before anything is decoded."""
    from vitfas.data.io import image_header
    from vitfas.errors import BadImageError, TooManyPixelsError

    if not data:
        raise UploadError(422, f"{name}: empty upload (0 bytes), expected an image")
    try:
        fmt, w, h = image_header(data, name, limit=max_pixels)
    except TooManyPixelsError as exc:
        raise UploadError(413, str(exc)) from exc
    except BadImageError as exc:
        raise UploadError(422, f"{name}: not a decodable image "
                               f"({str(exc).split(': ', 1)[-1]})") from exc
    if fmt not in ALLOWED_FORMATS:
        raise UploadError(415, f"{name}: image format {fmt} is not accepted; send one of "
                               f"{', '.join(ALLOWED_FORMATS)}")
    return fmt, w, h


MULTIPART_HINT = ("send the image as the multipart/form-data field 'file', e.g. "
                  "curl -F file=@photo.jpg http://HOST:PORT/v1/liveness")


def _content_type(request: Any) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def _validation_status(request: Any) -> int:
    """415 for a body that is not a form at all (e.g. a raw image/jpeg), else 422."""
    ctype = _content_type(request)
    is_upload = request.url.path.endswith("/liveness") and request.method == "POST"
    forms = ("multipart/form-data", "application/x-www-form-urlencoded")
    return 415 if is_upload and ctype and ctype not in forms else 422


def _validation_text(request: Any, exc: Any) -> str:
    """FastAPI's list of validation errors as one sentence."""
    ctype = _content_type(request)
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
        where = ".".join(loc) or "request"
        if err.get("type") == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    text = "; ".join(parts) or "invalid request"
    if request.url.path.endswith("/liveness") and any("file" in p for p in parts):
        got = f"got a {ctype} body" if ctype else "got no body"
        text = f"{text} ({got}): {MULTIPART_HINT}"
    return text


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> Any:
    """The FastAPI application serving ``predictor``."""
    s = settings or ServeSettings()
    detect_lock = threading.Lock()

    def run_batch(items: list[list[tuple[Any, Any]]]) -> list[list[Any]]:
        return predictor.predict_crops(items)

    batcher = MicroBatcher(run_batch, s.max_batch, s.max_wait_ms,
                           weight=lambda dets: max(1, len(dets)))

    @asynccontextmanager
    async def lifespan(app: Any):  # type: ignore[no-untyped-def]
        await run_in_threadpool(predictor.warm_up)  # so the first request is not the slow one
        yield
        await batcher.close()

    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        title="vitfas liveness",
        version="1",
        summary="Face anti-spoofing with Vision Transformers",
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.settings = s

    app.add_middleware(BodyLimit, limit=s.max_upload_bytes + MULTIPART_SLACK)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        return JSONResponse(status_code=_validation_status(request),
                            content={"detail": _validation_text(request, exc)})

    async def _score(file: UploadFile, explain: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        name = file.filename or "upload"
        ctype = (file.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if ctype not in ALLOWED_TYPES:
            raise UploadError(415, f"{name}: content type {ctype!r} is not accepted; send "
                                   f"image/jpeg, image/png, image/webp or image/bmp")
        data = await file.read(s.max_upload_bytes + 1)
        if len(data) > s.max_upload_bytes:
            raise UploadError(413, f"{name}: upload exceeds {s.max_upload_bytes} bytes")
        check_image_header(data, name, s.max_pixels)

        def decode_and_detect() -> tuple[Any, list[Any]]:
            try:
                rgb = decode_image(data, name, limit=s.max_pixels)
            except VitfasError as exc:
                raise UploadError(422, str(exc)) from exc
            except Exception as exc:
                raise UploadError(422, f"{name}: cannot decode ({type(exc).__name__}: "
                                       f"{exc})") from exc
            with detect_lock:
                return rgb, predictor.detect(rgb)

        rgb, dets = await run_in_threadpool(decode_and_detect)
        results = await batcher.submit(dets) if dets else []
        faces = [r.to_dict() for r in results]
        explain_error = None
        if explain and not s.allow_explain:
            explain_error = "explanations are disabled on this server"
        elif explain and dets:
            try:
                pngs = await run_in_threadpool(
                    lambda: [predictor.explain_png(crop) for _, crop in dets])
            except Exception as exc:  # the scores stand without an overlay
                log.warning("explanation failed: %s", exc)
                explain_error = f"{type(exc).__name__}: {exc}"
            else:
                for f, png in zip(faces, pngs):
                    f["explain_png"] = base64.b64encode(png).decode("ascii")
        return {
            "explain_error": explain_error,
            "model_id": predictor.model_id,
            "faces": faces,
            "score": faces[0]["score"] if faces else None,
            "decision": faces[0]["decision"] if faces else "no_face",
            "threshold": predictor.threshold,
            "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
            "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    @app.post(
        "/v1/liveness",
        response_model=LivenessResponse,
        responses={code: {"model": ErrorResponse} for code in (413, 415, 422, 500, 504)},
        summary="Score every face in an uploaded image",
    )
    async def liveness(
        file: Annotated[UploadFile, File(description="a JPEG, PNG, WebP or BMP image")],
        explain: Annotated[bool, Query(description="add a base64 PNG attention overlay per "
                                                   "face")] = False,
    ) -> Any:
        try:
            return await asyncio.wait_for(_score(file, explain), s.request_timeout_s)
        except UploadError as exc:
            return JSONResponse(status_code=exc.status, content={"detail": exc.message})
        except (asyncio.TimeoutError, TimeoutError):
            return JSONResponse(status_code=504, content={
                "detail": f"request took longer than {s.request_timeout_s:g} s"})
        except Exception as exc:  # never let one request take the worker down
            log.exception("liveness request failed")
            return JSONResponse(status_code=500, content={
                "detail": f"internal error: {type(exc).__name__}"})

    @app.get("/healthz", summary="Liveness of the service itself")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model_id": predictor.model_id}

    @app.get("/v1/model", summary="The model, its threshold, preprocessing and limits")
    async def model_info() -> dict[str, Any]:
        return {**predictor.describe(), "limits": asdict(s), "batching": batcher.stats(),
                "forward_calls": predictor.forward_calls}

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
