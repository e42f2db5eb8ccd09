"""The ``anypod keys``, ``tokens``, ``usage`` and ``audit`` commands: managing who may call the
API, straight on the database (no server needs to run; a running one sees the change on its
next request). Composition only: the work is :mod:`anypod.access`'s and the store's.

Every command takes ``--database``; ``--json`` prints one JSON line per record for scripts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import orjson
import typer

from anypod import access, errors
from anypod import settings as settings_module
from anypod import store as stores
from anypod.protocols import admin
from anypod.store import Store
from anypod.store.tenancy import AuditEntry, AuditQuery, UsageCounts, UsageQuery

T = TypeVar("T")
keys_app = typer.Typer(help="API keys: create, list, revoke, rotate.", no_args_is_help=True)
tokens_app = typer.Typer(help="Worker tokens: create, list, revoke.", no_args_is_help=True)

Database = Annotated[
    str | None,
    typer.Option(
        "--database", help="sqlite:///anypod.db or postgresql://... [env: ANYPOD_DATABASE_URL]"
    ),
]
Json = Annotated[bool, typer.Option("--json", help="one JSON line per record")]
CLI_ACTOR = "cli"


def _run(database: str | None, work: Callable[[Store], Awaitable[T]]) -> T:
    """``work`` on the store (migrated: a fresh database works), or exit 2 saying why."""
    url = settings_module.from_env(database_url=database).database_url

    async def go() -> T:
        async with stores.from_url(url, migrate=True) as store:
            return await work(store)

    try:
        return asyncio.run(go())
    except errors.AnypodError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


async def _audit(store: Store, action: str, target: str, detail: str | None = None) -> None:
    entry = AuditEntry(at=time.time(), action=action, actor=CLI_ACTOR, target=target, detail=detail)
    await store.append_audit([entry])


def _print(records: Sequence[dict[str, object]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        for record in records:
            typer.echo(orjson.dumps(record).decode())
        return
    rows = [[_cell(r.get(c)) for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items() if v not in (None, [])) or "-"
    return str(value)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",")]


# --- keys --------------------------------------------------------------------------------------

KEY_COLUMNS = ("id", "name", "tenant", "scopes", "endpoints", "state", "expires_at", "limits")


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="what the key is for")],
    tenant: Annotated[str | None, typer.Option(help="whose jobs (default: its own)")] = None,
    scopes: Annotated[str | None, typer.Option(help="run,read,cancel,admin")] = None,
    endpoints: Annotated[str | None, typer.Option(help="only these endpoints: a,b")] = None,
    expires: Annotated[str | None, typer.Option(help="e.g. 30d, 12h")] = None,
    rate: Annotated[str | None, typer.Option(help="requests per time, e.g. 20/s")] = None,
    burst: Annotated[float | None, typer.Option(help="the rate's bucket size")] = None,
    concurrency: Annotated[int | None, typer.Option(help="unfinished jobs at once")] = None,
    quota: Annotated[
        str | None, typer.Option(help="jobs=10000/month,gpu_seconds=36000/month")
    ] = None,
    database: Database = None,
    as_json: Json = False,
) -> None:
    """Create an API key. Its secret is printed once: it is stored only as a hash."""

    async def work(store: Store) -> access.NewKey:
        spec = access.KeySpec.parse(
            name=name,
            tenant=tenant,
            scopes=_split(scopes),
            endpoints=_split(endpoints),
            expires=expires,
            rate=rate,
            burst=burst,
            concurrency=concurrency,
            quota=quota,
        )
        new = await access.Credentials(store).create_key(spec)
        detail = {"name": name, "tenant": new.key.tenant}
        await _audit(store, "key.create", new.key.id, orjson.dumps(detail).decode())
        return new

    new = _run(database, work)
    record = {**new.key.public(time.time()), "key": new.secret}
    if as_json:
        typer.echo(orjson.dumps(record).decode())
        return
    typer.echo(new.secret)
    typer.echo(
        f"key {new.key.id} ({new.key.name}) for tenant {new.key.tenant}, scopes "
        f"{','.join(sorted(new.key.scopes))}: keep the secret above, it is not shown again",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="one tenant's keys")] = None,
    database: Database = None,
    as_json: Json = False,
) -> None:
    """List API keys (never their secrets)."""
    found = _run(database, lambda store: store.list_keys(tenant))
    now = time.time()
    _print([k.public(now) for k in found], KEY_COLUMNS, as_json)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="the key's id (apk_<id>_...)")],
    database: Database = None,
    as_json: Json = False,
) -> None:
    """Revoke a key: every server refuses it from its next request on."""

    async def work(store: Store) -> dict[str, object]:
        key = await access.Credentials(store).revoke_key(key_id)
        await _audit(store, "key.revoke", key_id)
        return key.public(time.time())

    _print([_run(database, work)], KEY_COLUMNS, as_json)


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="the key's id")],
    database: Database = None,
    as_json: Json = False,
) -> None:
    """A new secret for a key (same id, tenant, scopes, limits); the old secret stops working."""

    async def work(store: Store) -> access.NewKey:
        new = await access.Credentials(store).rotate_key(key_id)
        await _audit(store, "key.rotate", key_id)
        return new

    new = _run(database, work)
    if as_json:
        typer.echo(orjson.dumps({**new.key.public(time.time()), "key": new.secret}).decode())
        return
    typer.echo(new.secret)
    typer.echo(f"key {key_id} rotated: the old secret no longer works", err=True)


# --- worker tokens -----------------------------------------------------------------------------

TOKEN_COLUMNS = ("id", "endpoint", "name", "state", "created_at", "revoked_at")


@tokens_app.command("create")
def create_token(
    endpoint: Annotated[str, typer.Option(help="the endpoint its workers serve")],
    name: Annotated[str, typer.Option(help="a label, e.g. the host")] = "",
    database: Database = None,
    as_json: Json = False,
) -> None:
    """Create a worker token (printed once; ``anypod worker-env`` makes one too)."""

    async def work(store: Store) -> access.NewToken:
        new = await access.Credentials(store).create_token(endpoint, name)
        await _audit(store, "token.create", new.token.id)
        return new

    new = _run(database, work)
    if as_json:
        typer.echo(orjson.dumps({**new.token.public(), "token": new.secret}).decode())
        return
    typer.echo(new.secret)


@tokens_app.command("list")
def list_tokens(
    endpoint: Annotated[str | None, typer.Option(help="one endpoint's tokens")] = None,
    database: Database = None,
    as_json: Json = False,
) -> None:
    """List worker tokens (never their secrets)."""
    found = _run(database, lambda store: store.list_tokens(endpoint))
    _print([t.public() for t in found], TOKEN_COLUMNS, as_json)


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="the token's id (apw_<id>_...)")],
    database: Database = None,
) -> None:
    """Revoke a worker token: its workers get 401 and stop."""

    async def work(store: Store) -> None:
        await access.Credentials(store).revoke_token(token_id)
        await _audit(store, "token.revoke", token_id)

    _run(database, work)
    typer.echo(f"worker token {token_id} revoked")


# --- usage and audit ---------------------------------------------------------------------------

USAGE_COLUMNS = ("day", "key", "tenant", "endpoint", *UsageCounts.FIELDS)
AUDIT_COLUMNS = ("seq", "at", "action", "actor", "tenant", "target", "source", "detail")


def usage(
    key: Annotated[str | None, typer.Option(help="one key's usage (its id)")] = None,
    tenant: Annotated[str | None, typer.Option(help="one tenant's usage")] = None,
    since: Annotated[str | None, typer.Option(help="YYYY-MM-DD (UTC)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    database: Database = None,
    as_json: Json = False,
) -> None:
    """Usage per key, endpoint and day: jobs by final status, execution ms, bytes in and out.
    (Servers write their counts about once a second.)"""

    async def work(store: Store) -> list[dict[str, object]]:
        day = admin.since_day(since)
        rows = await store.usage(UsageQuery(key_id=key, tenant=tenant, since_day=day, limit=limit))
        return [admin.usage_item(r) for r in rows]

    _print(_run(database, work), USAGE_COLUMNS, as_json)


def audit(
    since: Annotated[str | None, typer.Option(help="RFC 3339, a day, or epoch seconds")] = None,
    action: Annotated[str | None, typer.Option(help='exact, or a prefix ending in "."')] = None,
    actor: Annotated[str | None, typer.Option(help="a key id, or cli")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    database: Database = None,
    as_json: Json = False,
) -> None:
    """The audit log, newest first."""

    async def work(store: Store) -> list[dict[str, object]]:
        query = AuditQuery(
            since=None if since is None else admin.since_time(since),
            action=action,
            actor=actor,
            tenant=tenant,
            limit=limit,
        )
        return [admin.audit_item(e) for e in await store.audit(query)]

    _print(_run(database, work), AUDIT_COLUMNS, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(tokens_app, name="tokens")
    app.command()(usage)
    app.command()(audit)
