"""Who is calling: the credential of a request resolved once, by the route's :class:`Auth`,
into a :class:`Caller` that handlers receive, and the checks every request passes before its
handler runs: the scope the route needs, the endpoints the key may use, the key's rate limit,
and the throttle on sources that keep failing to authenticate (their failures get 429).

Client and admin routes take an API key (``Authorization: Bearer <key>`` or the bare key, as
RunPod accepts both); while no key exists at all (development mode) anyone may call them.
Worker routes take the endpoint's worker token, which grants nothing on the other routes, and
an API key grants nothing on the worker routes.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from anypod import errors, keys
from anypod.access import EVERYONE, Viewer
from anypod.http.routing import Auth, Route
from anypod.service import JobService


@dataclasses.dataclass(frozen=True, kw_only=True)
class Caller:
    auth: Auth
    key: keys.ApiKey | None = None  # a client's key; None: development mode (open)
    endpoint: str | None = None  # for a worker: the endpoint its token serves
    source: str | None = None  # the client's address

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    @property
    def tenant(self) -> str | None:
        return None if self.key is None else self.key.tenant

    @property
    def admin(self) -> bool:
        return self.key is None or keys.Scope.ADMIN in self.key.scopes

    @property
    def viewer(self) -> Viewer:
        """Whose jobs this caller sees: its tenant's, or every tenant's for an admin."""
        return EVERYONE if self.admin else Viewer(self.tenant)


ANONYMOUS = Caller(auth=Auth.NONE)


def credential(request: Request) -> str | None:
    """``Authorization: Bearer <key>`` or the bare key (read off the raw ASGI headers: this
    runs on every request)."""
    for name, raw in request.scope["headers"]:
        if name == b"authorization":
            value = raw.decode("latin-1").strip()
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            return value or None
    return None


def source(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "-"


class Authenticator:
    def __init__(self, service: JobService) -> None:
        self.service = service
        self.credentials = service.credentials

    async def resolve(self, route: Route, request: Request, endpoint: str | None) -> Caller:
        if route.auth is Auth.NONE:
            return ANONYMOUS
        secret, where = credential(request), source(request)
        if route.auth is Auth.WORKER:
            assert endpoint is not None, "worker routes have an {endpoint} parameter"
            try:
                await self.service.authenticate_worker(endpoint, secret)  # on every call
            except errors.Unauthorized:
                self._failed(where)
                raise
            return Caller(auth=Auth.WORKER, endpoint=endpoint, source=where)
        key = await self._key(secret, where)
        if key is not None:
            try:
                self._check(route, key, endpoint)
            except errors.Forbidden:
                if route.scope is keys.Scope.ADMIN:  # a key trying the admin API: recorded
                    await self.service.audit.record(
                        "admin.forbidden",
                        actor=key.id,
                        tenant=key.tenant,
                        target=route.path,
                        source=where,
                    )
                raise
            await self.service.limiter.admit(key)
        return Caller(auth=route.auth, key=key, source=where)

    def _failed(self, where: str) -> None:
        """A failed authentication: counted; 429 instead of 401 for a source that failed too
        often this minute. A valid credential is never throttled (workers and clients behind
        the same address as an attacker keep working)."""
        audit = self.service.audit
        wait = audit.throttled(where)
        audit.failed(where)
        if wait is not None:
            raise errors.RateLimited(
                f"too many failed attempts to authenticate from {where}; wait {wait:.0f} s",
                limit="auth_failures",
                retry_after=round(wait),
                headers={"Retry-After": str(max(1, round(wait)))},
            )

    async def _key(self, secret: str | None, where: str) -> keys.ApiKey | None:
        """The caller's key; None in development mode; 401 without a usable one."""
        key = None if secret is None else await self.credentials.api_key(secret)
        if key is None and await self.credentials.keys_required():
            self._failed(where)
            raise errors.Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")
        return key

    @staticmethod
    def _check(route: Route, key: keys.ApiKey, endpoint: str | None) -> None:
        if route.scope is not None and not (
            route.scope in key.scopes or keys.Scope.ADMIN in key.scopes
        ):
            raise errors.Forbidden(f"this key lacks the {route.scope.value!r} scope")
        if endpoint is not None and key.endpoints is not None and endpoint not in key.endpoints:
            raise errors.EndpointNotFound(f"no endpoint named {errors.shown(endpoint)}")
