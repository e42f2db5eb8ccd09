"""Returns its pid and asks for a fresh handler process after every job (``refresh_worker``)."""

from __future__ import annotations

import os
from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "refresh_worker": True}
