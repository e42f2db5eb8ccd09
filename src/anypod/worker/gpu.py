"""The worker host's GPU, as workers report it in pings."""

from __future__ import annotations

import shutil
import subprocess


def detect() -> str:
    """The first GPU's name from nvidia-smi, or ``cpu``."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    return out.strip().splitlines()[0] if out.strip() else "cpu"
