"""Job stores. :func:`from_url` picks the backend from the URL scheme; drivers load lazily."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from anypod import errors
from anypod.store.base import Counts, JobQuery, Store, WorkerInfo
from anypod.store.sealing import PLAIN, Keyring

__all__ = ["Counts", "JobQuery", "Keyring", "Store", "WorkerInfo", "from_url", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise errors.ConfigError(f"no file in database URL {url!r} (try sqlite:///anypod.db)")
    return path


def from_url(url: str, *, migrate: bool = False, keys: Keyring = PLAIN) -> Store:
    """Build (not open) the store for ``url``: ``sqlite:///file.db``, ``postgresql://...`` or
    ``memory://`` (nothing kept; for tests).

    ``migrate=True`` applies pending schema migrations on open; otherwise an outdated schema
    makes :meth:`Store.open` raise :class:`errors.SchemaMismatch`. ``keys`` seals job values at
    rest in the SQL stores (:mod:`store.sealing`); the memory store keeps nothing at rest.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from anypod.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from anypod.store.sqlite import SQLiteStore

        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, migrate=migrate, keys=keys)
    if scheme in ("postgres", "postgresql"):
        try:
            from anypod.store.postgres import PostgresStore
        except ImportError as exc:
            raise errors.ConfigError(
                "the PostgreSQL store needs: pip install 'anypod[postgres]'"
            ) from exc
        store: Store = PostgresStore(url, migrate=migrate, keys=keys)
        return store
    raise errors.ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///, postgresql:// or memory://"
    )
