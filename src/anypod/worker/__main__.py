"""``python -m anypod.worker``: a worker whose :class:`WorkerOptions` arrive as JSON on standard
input, which is how ``anypod serve`` starts its embedded workers."""

from __future__ import annotations

import asyncio
import sys

from anypod import logs
from anypod.worker import lifeline
from anypod.worker.options import WorkerOptions
from anypod.worker.parent import serve

logs.configure("INFO")
options = WorkerOptions.from_json(sys.stdin.buffer.read())
if options.parent_pid is not None:
    lifeline.die_with_parent(options.parent_pid)
asyncio.run(serve(options))
