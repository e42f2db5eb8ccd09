"""``anypod.serverless.start({"handler": handler, ...})``: one handler file, both worlds.

On RunPod (its worker environment is set) it hands over to ``runpod.serverless.start``.
Anywhere else it serves the calling file as ``anypod serve`` would, honouring ``API_HOST`` and
``API_PORT``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from anypod import errors


def start(config: dict[str, Any]) -> None:
    handler = config.get("handler")
    if not callable(handler):
        raise errors.HandlerLoadError("start() needs {'handler': <function>}")
    from anypod import settings

    if settings.on_runpod():
        import runpod

        runpod.serverless.start(config)
        return
    from anypod import endpoints, runtime

    path = Path(inspect.getfile(handler)).resolve()
    spec = f"{path}:{handler.__name__}"
    name = endpoints.name_for_handler(str(path))
    host, port = settings.api_bind()
    found = settings.from_env(host=host, port=port)
    runtime.run(found, [endpoints.Endpoint(name=name, handler=spec)])
