"""RunPod's rules for turning what a handler did into the body of a ``job-done`` post.

These mirror ``runpod.serverless.modules.rp_job`` so a handler behaves the same under anypod.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import orjson

from anypod import settings, types

VERSION = "anypod"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def returned(value: Any, *, refresh_worker: bool = False) -> types.JSONDict:
    """Body for a plain handler's return value."""
    body: types.JSONDict
    if isinstance(value, dict):
        rest = dict(value)
        error = rest.pop("error", None)
        stop = bool(rest.pop("refresh_worker", False))
        if error is not None:
            body = {"output": rest, "error": error} if rest else {"error": error}
        else:
            body = {"output": rest} if rest or not value else {}
        if not value:
            body = {}
        if stop:
            body["stopPod"] = True
    else:
        body = {"output": value}
    if refresh_worker:
        body["stopPod"] = True
    return body


def raised(exc: BaseException, *, worker_id: str) -> types.JSONDict:
    """Body for a handler that raised: RunPod's JSON-in-a-string error document."""
    return {
        "error": json.dumps(
            {
                "error_type": str(type(exc)),
                "error_message": str(exc),
                "error_traceback": "".join(traceback.format_exception(exc)),
                "hostname": settings.pod_hostname(),
                "worker_id": worker_id,
                "runpod_version": VERSION,
            }
        )
    }


def generator_error(exc: BaseException) -> types.JSONDict:
    tb = "".join(traceback.format_exception(exc))
    return {"error": f"handler: {exc} \ntraceback: {tb}"}


def yielded_error(value: Any) -> str | None:
    """A yielded dict with a truthy ``error`` ends a generator job as FAILED."""
    if isinstance(value, dict) and value.get("error"):
        return str(value["error"])
    return None


def generator_done(items: list[Any], *, aggregate: bool, refresh_worker: bool) -> types.JSONDict:
    body: types.JSONDict = {"output": items if aggregate else []}
    if refresh_worker:
        body["stopPod"] = True
    return body


def encode(body: types.JSONDict) -> bytes:
    """JSON for the wire; an unserialisable output fails the job instead of vanishing."""
    try:
        return orjson.dumps(body, option=_JSON_OPTIONS)
    except TypeError as exc:
        return orjson.dumps({"error": f"handler output is not JSON-serialisable: {exc}"})
