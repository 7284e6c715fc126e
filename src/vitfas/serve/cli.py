"""``vitfas serve BUNDLE [--host 127.0.0.1 --port 8000]``: the liveness HTTP service.

``POST /v1/liveness`` (multipart field ``file``; ``?explain=1`` for attention overlays),
``GET /healthz``, ``GET /v1/model``, the web page at ``/`` and the OpenAPI schema at
``/openapi.json`` (interactive docs at ``/docs``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vitfas.predict.runtime import add_runtime_arguments


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a bundle over HTTP (FastAPI + uvicorn) with a web page",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", help="model bundle folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 serves every network interface")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    add_runtime_arguments(p)
    p.add_argument("--max-batch", type=int, default=16, help="most face crops per forward")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to batch with")
    p.add_argument("--max-upload-mb", type=float, default=10.0,
                   help="largest accepted upload, in MB (larger ones get HTTP 413)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest accepted image, in pixels, checked on the header before "
                        "decoding (decompression-bomb guard; default VITFAS_MAX_PIXELS or "
                        "64,000,000)")
    p.add_argument("--timeout", type=float, default=15.0, help="per-request timeout, seconds")
    p.add_argument("--no-explain", action="store_true", help="refuse ?explain=1")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from vitfas.data.io import max_pixels, set_max_pixels
    from vitfas.predict import load_predictor
    from vitfas.serve.app import ServeSettings, create_app

    if args.max_pixels is not None:
        set_max_pixels(args.max_pixels)
    pred = load_predictor(args.bundle, runtime=args.runtime, onnx_path=args.onnx,
                          batch_size=args.max_batch, detect_side=args.detect_side,
                          threads=args.threads)
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=max_pixels(),
        request_timeout_s=args.timeout, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, allow_explain=not args.no_explain,
    )
    app = create_app(pred, settings)
    print(f"serve: {pred.model_id} on http://{args.host}:{args.port}/ (API docs at /docs)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port,
                log_level="warning" if args.quiet else "info")
    return 0
