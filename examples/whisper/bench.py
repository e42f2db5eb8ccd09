"""Time model load and transcription of speech.wav; print peak RSS.

Usage: HF_HUB_OFFLINE=1 python examples/whisper/bench.py [runs]
"""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(runs: int) -> None:
    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location("whisper_handler", HERE / "whisper.py")
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = handler
    spec.loader.exec_module(handler)
    from faster_whisper import WhisperModel  # noqa: F401  (import cost, reported apart)

    imported = time.perf_counter()
    handler.get_model()
    loaded = time.perf_counter()
    print(f"import {imported - started:.2f}s  model load {loaded - imported:.2f}s")
    for i in range(runs):
        t0 = time.perf_counter()
        result = handler.transcribe(HERE / "speech.wav")
        print(f"transcribe #{i + 1}: {time.perf_counter() - t0:.2f}s  {result['text']!r}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
