"""Settings: the one place that reads the environment (``ANYPOD_*``)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping

from anypod import errors

PREFIX = "ANYPOD_"
MB = 1024 * 1024
WEBHOOK_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
"""At once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h (Svix's schedule): one attempt per entry."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = "sqlite:///anypod.db"
    host: str = "127.0.0.1"
    port: int = 8000
    insecure: bool = False
    api_keys: tuple[str, ...] = ()
    audit_retention_days: float = 90.0
    auth_failures_per_minute: int = 30  # per source address; beyond, 429 till the minute ends
    run_max_bytes: int = 10 * MB
    runsync_max_bytes: int = 20 * MB
    result_max_bytes: int = 64 * MB
    run_retention_ms: int = 1_800_000
    sync_retention_ms: int = 60_000
    lease_seconds: float = 30.0
    ping_interval_seconds: float = 10.0
    take_hold_seconds: float = 30.0
    sweep_interval_seconds: float = 0.5
    # slow clients (http/protocol.py): a request's head must come within this many seconds;
    # its body, after a grace of as many, at no less than this many bytes a second on average
    head_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    body_min_bytes_per_second: float = 10_000.0
    max_connections: int = 0  # open connections at most; 0: the open-file limit less a reserve
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    webhook_allow_private: bool | None = None
    webhook_schedule: tuple[float, ...] = WEBHOOK_SCHEDULE  # seconds before each attempt
    log_level: str = "INFO"
    batch_size: int | None = None  # BATCH_SIZE: overrides a batch handler's max_size
    batch_timeout_ms: float | None = None  # BATCH_TIMEOUT_MS: and its max_wait_ms
    # encryption at rest (store/sealing.py): the key that seals (base64 of 32 bytes) or a file of
    # keys, one a line, the first sealing; older keys only open what they sealed
    encryption_key: str | None = dataclasses.field(default=None, repr=False)
    encryption_key_file: str | None = None
    encryption_old_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)

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

    def check_exposure(self, managed_keys: bool = False) -> str | None:
        """Refuse an open server on a public address; return a warning in development mode.
        ``managed_keys``: keys exist in the store (``anypod keys create``)."""
        if self.api_keys or managed_keys:
            return None
        if not self.loopback and not self.insecure:
            raise errors.ConfigError(
                f"refusing to listen on {self.host} without API keys; create one with "
                "`anypod keys create`, set ANYPOD_API_KEYS, or pass --insecure"
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
        if name in ("api_keys", "encryption_old_keys"):
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        if name == "webhook_schedule":
            return webhook_schedule(raw)
        for prefix, cast in _CASTS.items():
            if text.startswith(prefix):
                return cast(raw)
    except ValueError as exc:
        raise errors.ConfigError(f"{variable}={raw!r}: {exc}") from exc
    return raw


def webhook_schedule(raw: str) -> tuple[float, ...]:
    """``"0,5,300"`` → seconds before each attempt: the first 0 (at once), none negative."""
    delays = tuple(float(part) for part in raw.split(","))
    if delays[0] != 0 or not all(0 <= d <= 7 * 86400 for d in delays) or len(delays) > 50:
        raise ValueError("1 to 50 comma-separated delays in seconds, the first 0, each ≤ 7 days")
    return delays


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
