"""Who a secret is: API keys (managed in the store, or bootstrap keys from the environment) and
worker tokens, resolved to their records, created, listed, revoked and rotated.

A key's secret names its record (``apk_<id>_…``, :mod:`anypod.keys`), so resolving one is a
primary-key read and a constant-time comparison of hashes, never a scan. Records are cached
only where every change reaches this process at once: on PostgreSQL, each create, revoke or
rotate (from any replica, or the CLI) sends a ``credentials`` notification and every replica
drops its cache; on SQLite, a change grows a sidecar file beside the database, which the
server stats on each request (:meth:`Store.credentials_version`). A time-to-live backs both
up. Either way a revoked or expired key gets 401 on its next request.

Bootstrap keys (``ANYPOD_API_KEYS``) have the admin scope and the tenant ``default``; they live
only in the environment. The client API is open (development mode) only while there are no
bootstrap keys and no key on record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from anypod import background, errors, keys, notifier
from anypod.store import Store

CREDENTIALS = "credentials"  # the notifier topic of a change to keys or tokens
BOOTSTRAP_TENANT = "default"
MAX_CACHED = 10_000
V = TypeVar("V")


def bootstrap_key(secret: str) -> keys.ApiKey:
    return keys.ApiKey(
        id=f"env-{keys.digest(secret)[:12]}",
        name="ANYPOD_API_KEYS",
        tenant=BOOTSTRAP_TENANT,
        scopes=keys.ALL_SCOPES,
        created_at=0.0,
    )


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Whose jobs a caller sees: one tenant's, or (``tenant`` None) every tenant's: an admin
    key, or the open API of development mode."""

    tenant: str | None


EVERYONE = Viewer(None)


@dataclasses.dataclass(frozen=True)
class NewKey:
    key: keys.ApiKey
    secret: str  # shown once


@dataclasses.dataclass(frozen=True)
class NewToken:
    token: keys.WorkerToken
    secret: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeySpec:
    """What ``anypod keys create`` and ``POST /admin/v1/keys`` ask for (already checked)."""

    name: str
    tenant: str | None = None  # None: a tenant of its own
    scopes: frozenset[keys.Scope] = keys.DEFAULT_SCOPES
    endpoints: frozenset[str] | None = None
    expires_in: float | None = None
    limits: keys.KeyLimits = keys.NO_LIMITS

    @classmethod
    def parse(
        cls,
        *,
        name: str,
        tenant: str | None = None,
        scopes: Sequence[str] | None = None,
        endpoints: Sequence[str] | None = None,
        expires: str | None = None,
        rate: str | None = None,
        burst: float | None = None,
        concurrency: int | None = None,
        quota: str | None = None,
    ) -> KeySpec:
        """From what a person typed (the CLI's flags, the admin API's body); a bad value is
        :class:`errors.InvalidRequest` naming it."""
        if concurrency is not None and not 1 <= concurrency <= keys.MAX_CONCURRENCY:
            raise errors.InvalidRequest(
                f"concurrency: from 1 to {keys.MAX_CONCURRENCY}", field="concurrency"
            )
        if burst is not None and (not 1 <= burst <= keys.MAX_RATE or rate is None):
            raise errors.InvalidRequest(
                f"burst: from 1 to {keys.MAX_RATE:.0f}, and only with a rate", field="burst"
            )
        return cls(
            name=keys.check_name(name, "name"),
            tenant=None if tenant is None else keys.check_name(tenant, "tenant"),
            scopes=keys.DEFAULT_SCOPES if scopes is None else keys.parse_scopes(scopes),
            endpoints=None if endpoints is None else keys.check_endpoints(endpoints),
            expires_in=None if expires is None else keys.parse_duration(expires),
            limits=keys.KeyLimits(
                rate=None if rate is None else keys.parse_rate(rate),
                burst=burst,
                concurrency=concurrency,
                quotas=tuple(keys.parse_quotas(quota or "")),
            ),
        )


class Credentials:
    def __init__(
        self,
        store: Store,
        *,
        bootstrap: Collection[str] = (),
        clock: Callable[[], float] = time.time,
        cache_seconds: float = 0.0,
        wakeups: notifier.Notifier | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.wakeups = wakeups
        self._bootstrap = {keys.digest(s): bootstrap_key(s) for s in bootstrap}
        self._keys: dict[str, tuple[float, keys.ApiKey, str] | None] = {}
        self._tokens: dict[str, tuple[float, keys.WorkerToken | None]] = {}
        self._session: dict[str, str] = {}  # token hash → endpoint, for embedded workers
        self._tenants: dict[str, str] = {k.id: k.tenant for k in self._bootstrap.values()}
        self._has_keys: tuple[float, bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._version: object | None = None

    # --- resolving ---------------------------------------------------------------------------

    async def api_key(self, secret: str) -> keys.ApiKey | None:
        """The usable key the secret is, or None (unknown, wrong, revoked or expired)."""
        self._check_version()
        digest = keys.digest(secret)
        found = self._bootstrap.get(digest) if self._bootstrap else None
        if found is None:
            key_id = keys.record_id(secret, keys.KEY_PREFIX)
            record = None if key_id is None else await self._key(key_id)
            if record is not None and hmac.compare_digest(digest, record[1]):
                found = record[0]
        return found if found is not None and found.usable(self.clock()) else None

    async def keys_required(self) -> bool:
        if self._bootstrap:
            return True
        self._check_version()
        now = self.clock()
        if self._has_keys is not None and (self._has_keys[1] or now < self._has_keys[0]):
            return self._has_keys[1]  # once there are keys, there always are
        found = await self.store.has_keys()
        self._has_keys = (now + self.cache_seconds, found)
        return found

    async def worker_endpoint(self, secret: str) -> str | None:
        """The endpoint a worker token serves; None for an unknown or revoked one."""
        digest = keys.digest(secret)
        if digest in self._session:
            return self._session[digest]
        self._check_version()
        now = self.clock()
        cached = self._tokens.get(digest)
        if cached is None or now >= cached[0]:
            cached = (now + self.cache_seconds, await self.store.token_by_hash(digest))
            self._remember(self._tokens, digest, cached)
        token = cached[1]
        return token.endpoint if token is not None and token.revoked_at is None else None

    async def tenant_of(self, owner: str | None) -> str | None:
        """The tenant of a job's owner (a key id). A key's tenant never changes: kept."""
        if owner is None:
            return None
        if owner not in self._tenants:
            record = await self.store.get_key(owner)
            if record is None:
                return None
            self._remember(self._tenants, owner, record.key.tenant)
        return self._tenants[owner]

    async def key_of(self, owner: str | None) -> keys.ApiKey | None:
        """The key that owns a job (revoked or not; None for a job of the open API)."""
        if owner is None:
            return None
        for key in self._bootstrap.values():
            if key.id == owner:
                return key
        record = await self._key(owner)
        return None if record is None else record[0]

    async def owners(self, tenant: str) -> list[str]:
        """Every key id of the tenant, revoked or not (they own its jobs)."""
        found = await self.store.tenant_key_ids(tenant)
        return found + [k.id for k in self._bootstrap.values() if k.tenant == tenant]

    async def _key(self, key_id: str) -> tuple[keys.ApiKey, str] | None:
        now = self.clock()
        cached = self._keys.get(key_id)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2]
        record = await self.store.get_key(key_id)
        if record is None:
            return None
        self._remember(
            self._keys, key_id, (now + self.cache_seconds, record.key, record.secret_hash)
        )
        self._remember(self._tenants, key_id, record.key.tenant)
        return record.key, record.secret_hash

    @staticmethod
    def _remember(cache: dict[str, V], key: str, value: V) -> None:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = value

    # --- changing ------------------------------------------------------------------------------

    async def create_key(self, spec: KeySpec) -> NewKey:
        now = self.clock()
        key_id = keys.new_id()
        key = keys.ApiKey(
            id=key_id,
            name=spec.name,
            tenant=spec.tenant or f"t-{key_id}",
            scopes=spec.scopes,
            endpoints=spec.endpoints,
            limits=spec.limits,
            created_at=now,
            expires_at=None if spec.expires_in is None else now + spec.expires_in,
        )
        secret = keys.new_secret(keys.KEY_PREFIX, key_id)
        await self.store.add_key(key, keys.digest(secret))
        await self._changed()
        return NewKey(key, secret)

    async def revoke_key(self, key_id: str) -> keys.ApiKey:
        if not await self.store.revoke_key(key_id, self.clock()):
            await self._existing(key_id)
            raise errors.Conflict(f"key {key_id} is already revoked")
        await self._changed()
        return await self._existing(key_id)

    async def rotate_key(self, key_id: str) -> NewKey:
        secret = keys.new_secret(keys.KEY_PREFIX, key_id)
        if not await self.store.rotate_key(key_id, keys.digest(secret), self.clock()):
            await self._existing(key_id)
            raise errors.Conflict(f"key {key_id} is revoked: create a new one")
        await self._changed()
        return NewKey(await self._existing(key_id), secret)

    async def get_key(self, key_id: str) -> keys.ApiKey:
        return await self._existing(key_id)

    async def _existing(self, key_id: str) -> keys.ApiKey:
        record = await self.store.get_key(key_id)
        if record is None:
            raise errors.NotFound(f"no key {errors.shown(key_id)}")
        return record.key

    async def create_token(self, endpoint: str, name: str = "") -> NewToken:
        keys.check_label(name, "name")
        token_id = keys.new_id()
        token = keys.WorkerToken(id=token_id, endpoint=endpoint, name=name, created_at=self.clock())
        secret = keys.new_secret(keys.TOKEN_PREFIX, token_id)
        await self.store.add_token(token, keys.digest(secret))
        return NewToken(token, secret)

    async def revoke_token(self, token_id: str) -> None:
        if not await self.store.revoke_token(token_id, self.clock()):
            raise errors.NotFound(f"no active worker token {errors.shown(token_id)}")
        await self._changed()

    def session_token(self, endpoint: str) -> str:
        """A worker token only this process knows, that dies with it (embedded workers)."""
        secret = keys.new_secret(keys.TOKEN_PREFIX, keys.new_id())
        self._session[keys.digest(secret)] = endpoint
        return secret

    async def _changed(self) -> None:
        self.forget()
        await self.store.announce_credentials()

    def _check_version(self) -> None:
        """Drop the cache when another process announced a change (or the store cannot tell)."""
        version = self.store.credentials_version()
        if version is None or version != self._version:
            self._version = version
            self.forget()

    def forget(self) -> None:
        """Drop every cached record (another process changed keys or tokens)."""
        self._keys.clear()
        self._tokens.clear()
        self._has_keys = None

    # --- listening for changes elsewhere -------------------------------------------------------

    name = "credentials"

    async def start(self) -> None:
        if self.wakeups is not None and self.cache_seconds > 0:
            self._task = asyncio.create_task(self._listen(self.wakeups))

    async def stop(self) -> None:
        await background.cancel(self._task)
        self._task = None

    async def _listen(self, wakeups: notifier.Notifier) -> None:
        while not wakeups.closed:
            with wakeups.listen(CREDENTIALS) as listener:
                await listener.wait(3600.0)
            self.forget()
