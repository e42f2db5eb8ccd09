"""The OpenAPI document, generated from the route table: paths, path and query parameters,
request bodies, every status each route answers with its reply model, and the two credentials
(an API key on client routes, a worker token on worker routes).

It is OpenAPI 3.0.3, the version the bundled Swagger UI renders; pydantic's JSON Schema is
brought down to it (``nullable`` instead of a ``null`` type, ``enum`` instead of ``const``).
"""

from __future__ import annotations

import http
import inspect
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from anypod.http.routing import Auth, Route, parameters

REF = "#/components/schemas/{model}"
SECURITY = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>` (the bare key works too).",
    },
    "WorkerToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The endpoint's worker token (`anypod worker-env` prints one), sent raw.",
    },
}
_SCHEME = {Auth.CLIENT: "ApiKey", Auth.WORKER: "WorkerToken"}
Key = tuple[type[BaseModel], JsonSchemaMode]
Refs = dict[Any, Any]  # (model, mode) -> {"$ref": ...}


def document(routes: Sequence[Route], *, title: str, version: str, description: str) -> Any:
    shown = [r for r in routes if r.in_schema]
    refs, defs = models_json_schema(sorted(_models(shown), key=_name), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in shown:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return _v30(
        {
            "openapi": "3.0.3",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {"schemas": defs.get("$defs", {}), "securitySchemes": SECURITY},
        }
    )


def _name(key: tuple[Any, JsonSchemaMode]) -> str:
    return f"{key[0].__name__}:{key[1]}"


def _models(routes: Sequence[Route]) -> set[Key]:
    found: set[Key] = set()
    for route in routes:
        if route.body is not None:
            found.add((route.body, "validation"))
        found.update((m, "serialization") for m in route.responses.values() if m is not None)
    return found


def _operation(route: Route, refs: Refs) -> dict[str, Any]:
    doc = inspect.getdoc(route.handler) or ""
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "description": doc,
        "tags": [route.tag],
        "parameters": _path_parameters(route) + _query_parameters(route),
        "responses": {str(s): _reply(s, m, refs) for s, m in sorted(route.responses.items())},
    }
    if route.body is not None:
        schema = refs[(route.body, "validation")]
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if route.auth in _SCHEME:
        op["security"] = [{_SCHEME[route.auth]: []}]
    return op


def _reply(status: int, model: type[BaseModel] | None, refs: Refs) -> dict[str, Any]:
    reply: dict[str, Any] = {"description": http.HTTPStatus(status).phrase}
    if model is not None:
        reply["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
    return reply


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for _, name in parameters(route.path)
    ]


def _query_parameters(route: Route) -> list[dict[str, Any]]:
    if route.query is None:
        return []
    schema = route.query.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.pop("description", ""),
            "schema": prop,
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def _v30(value: Any) -> Any:
    """JSON Schema 2020-12, as pydantic writes it, in OpenAPI 3.0's dialect."""
    if isinstance(value, list):
        return [_v30(v) for v in value]
    if not isinstance(value, dict):
        return value
    node = {k: _v30(v) for k, v in value.items() if k != "examples"}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node.update(rest[0])
        else:
            node["anyOf" if len(rest) > 1 else "allOf"] = rest
        node["nullable"] = True
    return node
