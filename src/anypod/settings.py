"""Settings: the one place that reads the environment (``ANYPOD_*``)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping

from anypod import errors

PREFIX = "ANYPOD_"
MB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = "sqlite:///anypod.db"
    host: str = "127.0.0.1"
    port: int = 8000
    insecure: bool = False
    api_keys: tuple[str, ...] = ()
    run_max_bytes: int = 10 * MB
    runsync_max_bytes: int = 20 * MB
    result_max_bytes: int = 64 * MB
    run_retention_ms: int = 1_800_000
    sync_retention_ms: int = 60_000
    lease_seconds: float = 30.0
    ping_interval_seconds: float = 10.0
    take_hold_seconds: float = 30.0
    sweep_interval_seconds: float = 0.5
    webhook_secret: str | None = None
    webhook_allow_private: bool | None = None
    log_level: str = "INFO"
    batch_size: int | None = None  # BATCH_SIZE: overrides a batch handler's max_size
    batch_timeout_ms: float | None = None  # BATCH_TIMEOUT_MS: and its max_wait_ms

    @property
    def replicated(self) -> bool:
        """PostgreSQL: API replicas may share the database (SQLite has one owner)."""
        return self.database_url.startswith(("postgres:", "postgresql:"))

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @property
    def allow_private_webhooks(self) -> bool:
        """Development mode (loopback) may call back to localhost; servers may not by default."""
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.loopback

    def check_exposure(self) -> str | None:
        """Refuse an open server on a public address; return a warning in development mode."""
        if self.api_keys:
            return None
        if not self.loopback and not self.insecure:
            raise errors.ConfigError(
                f"refusing to listen on {self.host} without API keys; set ANYPOD_API_KEYS "
                "or pass --insecure"
            )
        return "no API keys configured: the API is open to anyone who can reach it"


_CASTS: dict[str, Callable[[str], object]] = {
    "bool": lambda v: v.lower() in ("1", "true", "yes", "on"),
    "int": int,
    "float": float,
}


_UNPREFIXED = {"BATCH_SIZE": "batch_size", "BATCH_TIMEOUT_MS": "batch_timeout_ms"}
"""Read without the prefix: the names RunPod's batching workers use."""
_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then ``ANYPOD_<FIELD>`` variables, then explicit ``overrides`` (CLI flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in dataclasses.fields(Settings):
        raw = env.get(PREFIX + field.name.upper())
        if raw is None:
            continue
        values[field.name] = _cast(field.name, PREFIX + field.name.upper(), raw)
    for variable, name in _UNPREFIXED.items():
        if env.get(variable):
            values[name] = _cast(name, variable, env[variable])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]


def _cast(name: str, variable: str, raw: str) -> object:
    text = str(_TYPES[name])
    try:
        if name == "api_keys":
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        for prefix, cast in _CASTS.items():
            if text.startswith(prefix):
                return cast(raw)
    except ValueError as exc:
        raise errors.ConfigError(f"{variable}={raw!r}: {exc}") from exc
    return raw


# --- the RunPod worker environment (read where a handler runs) -------------------------------


def on_runpod(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a RunPod worker (its job-take URL is set)."""
    return bool((os.environ if environ is None else environ).get("RUNPOD_WEBHOOK_GET_JOB"))


def runpod_progress_configured() -> bool:
    """True where ``runpod.serverless.progress_update`` has somewhere to post."""
    return bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))


def pod_hostname() -> str:
    return os.environ.get("RUNPOD_POD_HOSTNAME", "unknown")


def api_bind() -> tuple[str | None, int | None]:
    """``API_HOST`` / ``API_PORT``, as RunPod's realtime and local servers use them."""
    port = os.environ.get("API_PORT")
    try:
        return os.environ.get("API_HOST"), int(port) if port else None
    except ValueError as exc:
        raise errors.ConfigError(f"API_PORT={port!r} is not a port number") from exc
