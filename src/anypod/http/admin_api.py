"""anypod's admin API, one thin handler per route: keys, worker tokens, usage and the audit log.
Every route needs the admin scope (``http/routes.py``), and every call is itself audited."""

from __future__ import annotations

import functools

from starlette.responses import Response

from anypod import access, errors
from anypod.http.context import Context
from anypod.http.responses import json_response
from anypod.http.routing import Handler
from anypod.protocols import admin
from anypod.protocols import errors as table
from anypod.store.tenancy import AuditQuery, UsageQuery


def audited(handler: Handler) -> Handler:
    """An admin call refused (no such key, already revoked, bad value) is audited too."""

    @functools.wraps(handler)
    async def run(ctx: Context) -> Response:
        try:
            return await handler(ctx)
        except errors.AnypodError as exc:
            status, code = table.status_and_code(exc)
            target = next(iter(ctx.params.values()), handler.__name__)
            detail = {"call": handler.__name__, "status": status, "code": code}
            await ctx.audit("admin.refused", target, detail)
            raise

    return run


def _key_reply(new: access.NewKey, now: float) -> dict[str, object]:
    return {**new.key.public(now), "key": new.secret}


@audited
async def list_keys(ctx: Context) -> Response:
    """Every key (never a secret); ``?tenant=`` for one tenant's."""
    query = ctx.query_as(admin.KeysQuery)
    found = await ctx.service.store.list_keys(query.tenant)
    await ctx.audit("admin.keys.list", query.tenant or "*")
    now = ctx.service.clock()
    return json_response({"keys": [k.public(now) for k in found]})


@audited
async def create_key(ctx: Context) -> Response:
    """A new key; its secret is in this reply only."""
    body = ctx.body_as(admin.KeyCreate)
    spec = access.KeySpec.parse(**body.model_dump())
    new = await ctx.service.credentials.create_key(spec)
    await ctx.audit("key.create", new.key.id, {"name": spec.name, "tenant": new.key.tenant})
    return json_response(_key_reply(new, ctx.service.clock()), status_code=201)


@audited
async def get_key(ctx: Context) -> Response:
    """One key's record."""
    key = await ctx.service.credentials.get_key(ctx.params["key_id"])
    await ctx.audit("admin.keys.get", key.id)
    return json_response(key.public(ctx.service.clock()))


@audited
async def revoke_key(ctx: Context) -> Response:
    """Revoke a key: 401 on its next request, on every replica."""
    key = await ctx.service.credentials.revoke_key(ctx.params["key_id"])
    await ctx.audit("key.revoke", key.id)
    return json_response(key.public(ctx.service.clock()))


@audited
async def rotate_key(ctx: Context) -> Response:
    """A new secret for the key (same id, tenant, scopes and limits); the old one stops."""
    new = await ctx.service.credentials.rotate_key(ctx.params["key_id"])
    await ctx.audit("key.rotate", new.key.id)
    return json_response(_key_reply(new, ctx.service.clock()))


@audited
async def list_tokens(ctx: Context) -> Response:
    """Worker tokens (never a secret); ``?endpoint=`` for one endpoint's."""
    query = ctx.query_as(admin.TokensQuery)
    found = await ctx.service.store.list_tokens(query.endpoint)
    await ctx.audit("admin.tokens.list", query.endpoint or "*")
    return json_response({"tokens": [t.public() for t in found]})


@audited
async def create_token(ctx: Context) -> Response:
    """A worker token for an endpoint; its secret is in this reply only."""
    body = ctx.body_as(admin.TokenCreate)
    ctx.service.endpoint(body.endpoint)
    new = await ctx.service.credentials.create_token(body.endpoint, body.name)
    await ctx.audit("token.create", new.token.id, {"endpoint": body.endpoint})
    return json_response({**new.token.public(), "token": new.secret}, status_code=201)


@audited
async def revoke_token(ctx: Context) -> Response:
    """Revoke a worker token: its worker gets 401 and stops."""
    await ctx.service.credentials.revoke_token(ctx.params["token_id"])
    await ctx.audit("token.revoke", ctx.params["token_id"])
    return json_response({"id": ctx.params["token_id"], "state": "revoked"})


@audited
async def usage(ctx: Context) -> Response:
    """Usage per key, endpoint and day (UTC), newest first."""
    q = ctx.query_as(admin.UsageQueryModel)
    await ctx.service.usage.flush()  # this replica's last second too
    rows = await ctx.service.store.usage(
        UsageQuery(key_id=q.key, tenant=q.tenant, since_day=admin.since_day(q.since), limit=q.limit)
    )
    await ctx.audit("admin.usage", q.key or q.tenant or "*")
    return json_response({"usage": [admin.usage_item(r) for r in rows]})


@audited
async def audit_log(ctx: Context) -> Response:
    """Audit entries, newest first; page with ``?before=<next_before>``."""
    q = ctx.query_as(admin.AuditQueryModel)
    query = AuditQuery(
        since=None if q.since is None else admin.since_time(q.since),
        action=q.action,
        actor=q.actor,
        tenant=q.tenant,
        before_seq=q.before,
        limit=q.limit,
    )
    await ctx.audit("admin.audit", q.action or "*")
    entries = await ctx.service.store.audit(query)
    last = entries[-1].seq if len(entries) == q.limit else None
    return json_response({"entries": [admin.audit_item(e) for e in entries], "next_before": last})
