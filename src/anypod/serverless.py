"""``anypod.serverless.start({"handler": handler, ...})``: one handler file, both worlds.

On RunPod (its worker environment is set) it hands over to ``runpod.serverless.start``.
Anywhere else it serves the calling file as ``anypod serve`` would, honouring ``API_HOST`` and
``API_PORT``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from anypod import errors


def start(config: dict[str, Any]) -> None:
    handler = config.get("handler")
    if not callable(handler):
        raise errors.HandlerLoadError("start() needs {'handler': <function>}")
    if os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        import runpod

        runpod.serverless.start(config)
        return
    from anypod import compose, endpoints, settings

    path = Path(inspect.getfile(handler)).resolve()
    spec = f"{path}:{handler.__name__}"
    name = endpoints.name_for_handler(str(path))
    found = settings.from_env(
        host=os.environ.get("API_HOST"),
        port=int(os.environ["API_PORT"]) if "API_PORT" in os.environ else None,
    )
    compose.run(found, [endpoints.Endpoint(name=name, handler=spec)])
