"""``GET /health`` for load balancers: ready or not, store, workers, GPU."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Request
from starlette.responses import Response

from anypod import errors
from anypod.http.client_api import service
from anypod.http.responses import json_response

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(request: Request) -> Response:
    svc = service(request)
    try:
        await svc.store.ping()
        workers = await svc.store.workers(None, svc.clock() - 3 * svc.timing.ping_interval)
        store_ok = True
    except errors.StoreUnavailable:
        workers, store_ok = [], False
    gpus = sorted({w.gpu for w in workers if w.gpu and w.gpu.lower() not in ("", "cpu", "none")})
    body = {
        "status": "ok" if store_ok else "unavailable",
        "store": store_ok,
        "endpoints": sorted(svc.endpoints),
        "workers": len(workers),
        "gpu": bool(gpus) or shutil.which("nvidia-smi") is not None,
        "gpus": gpus,
    }
    return json_response(body, status_code=200 if store_ok else 503)
