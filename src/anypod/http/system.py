"""Routes about the server itself: ``/health`` for load balancers, the OpenAPI document, and
``/docs`` (Swagger UI served from the installed ``swagger-ui-bundle``: no CDN, so it works on
an air-gapped host; its Authorize button takes the API key or a worker token)."""

from __future__ import annotations

import functools
import shutil
from importlib.resources.abc import Traversable

from pydantic import BaseModel
from starlette.responses import HTMLResponse, Response

from anypod import errors
from anypod.http.context import Context
from anypod.http.responses import json_response


class ServerHealthReply(BaseModel):
    status: str
    store: bool
    endpoints: list[str]
    workers: int
    gpu: bool
    gpus: list[str]


async def health(ctx: Context) -> Response:
    """Ready or not (503 while the store is unreachable), with workers seen and GPUs."""
    svc = ctx.service
    found = await svc.server_health()
    gpus = sorted({w.gpu for w in found.workers if w.gpu and w.gpu.lower() not in ("cpu", "none")})
    body = {
        "status": "ok" if found.store else "unavailable",
        "store": found.store,
        "endpoints": sorted(svc.endpoints),
        "workers": len(found.workers),
        "gpu": bool(gpus) or shutil.which("nvidia-smi") is not None,
        "gpus": gpus,
    }
    return json_response(body, status_code=200 if found.store else 503)


async def openapi(ctx: Context) -> Response:
    """This API, generated from the route table."""
    return json_response(ctx.request.app.openapi())


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anypod API</title>
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: true, validatorUrl: null, tryItOutEnabled: true,
});
</script></body></html>
"""
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}


async def docs(ctx: Context) -> Response:
    return HTMLResponse(DOCS_PAGE)


async def docs_asset(ctx: Context) -> Response:
    name = ctx.params["name"]
    if name not in ASSETS:
        raise errors.NotFound(f"no docs asset {name!r}")
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(_asset(name), media_type=ASSETS[name], headers=headers)


@functools.cache
def _asset(name: str) -> bytes:
    from swagger_ui_bundle import swagger_ui_path

    folder: Traversable = swagger_ui_path
    return folder.joinpath(name).read_bytes()
