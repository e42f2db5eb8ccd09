"""Load a user's handler: ``path/to/file.py[:function]`` or ``package.module:function``.

A file runs as ``__main__`` so a RunPod handler file's ``runpod.serverless.start({...})`` call
runs too; that call (and ``anypod.serverless.start``) is captured, giving the handler and its
config (``concurrency_modifier``, ``return_aggregate_stream``, ``refresh_worker``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import types as pytypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anypod import batching, errors

Handler = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Loaded:
    handler: Handler
    config: dict[str, Any]

    @property
    def batch(self) -> batching.BatchSpec | None:
        return batching.spec_of(self.handler, self.config)

    @property
    def is_generator(self) -> bool:
        h = self.handler
        return inspect.isgeneratorfunction(h) or inspect.isasyncgenfunction(h)

    def concurrency(self, current: int) -> int:
        modifier = self.config.get("concurrency_modifier")
        if modifier is None:
            return current
        return max(1, int(modifier(current)))


class _Captured(BaseException):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config


def _capture(config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    raise _Captured(dict(config))


@contextmanager
def capturing_start(patch_runpod: bool) -> Iterator[None]:
    """Make ``runpod.serverless.start`` and ``anypod.serverless.start`` hand us their config."""
    from anypod import serverless

    targets: list[tuple[Any, Any]] = [(serverless, serverless.start)]
    if patch_runpod:
        import runpod.serverless

        targets.append((runpod.serverless, runpod.serverless.start))
    for module, _ in targets:
        module.start = _capture
    try:
        yield
    finally:
        for module, original in targets:
            module.start = original


def load(spec: str) -> Loaded:
    target, _, function = spec.partition(":")
    if target.endswith(".py") or Path(target).is_file():
        return _from_file(Path(target), function or None)
    if not function:
        raise errors.HandlerLoadError(f"{spec!r}: give module:function or a .py file")
    with capturing_start(patch_runpod=True):
        module = importlib.import_module(target)
    return _pick(vars(module), function, {}, spec)


def _from_file(path: Path, function: str | None) -> Loaded:
    if not path.is_file():
        raise errors.HandlerLoadError(f"handler file {path} not found")
    source = path.read_text()
    module = pytypes.ModuleType("__main__")
    module.__file__ = str(path.resolve())
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules["__main__"] = module
    config: dict[str, Any] = {}
    with capturing_start(patch_runpod="runpod" in source):
        try:
            exec(compile(source, str(path), "exec"), vars(module))
        except _Captured as captured:
            config = captured.config
    return _pick(vars(module), function, config, str(path))


def _pick(
    namespace: dict[str, Any], function: str | None, config: dict[str, Any], where: str
) -> Loaded:
    handler = namespace.get(function) if function else config.get("handler")
    if handler is None:
        handler = namespace.get(function or "handler")
    if not callable(handler):
        name = function or "handler"
        raise errors.HandlerLoadError(f"{where}: no callable {name!r} (and no start() call)")
    return Loaded(handler=handler, config=config)
