"""Webhook delivery against a real SQLite store; the receiver is an httpx MockTransport."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from anypod import jobs, notifier
from anypod import store as stores
from anypod.webhooks import WebhookPolicy, WebhookSender
from tests.clock import T0, Clock

HOLDER = jobs.Holder(worker_id="w", endpoint="ep")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[stores.Store]:
    async with stores.from_url(f"sqlite:///{tmp_path / 'w.db'}", migrate=True) as opened:
        yield opened


async def finished_job(store: stores.Store, webhook: str) -> None:
    await store.submit(
        jobs.NewJob(
            id="j1",
            endpoint="ep",
            input=b'{"a":1}',
            policy=jobs.Policy(),
            retention_ms=60_000,
            max_attempts=3,
            created_at=T0,
            webhook=webhook,
        )
    )
    await store.claim("ep", 1, jobs.claim("w", T0, 30))
    await store.end("j1", jobs.finish(jobs.Result(output=b'{"ok":true}'), HOLDER, T0))


async def test_retries_then_delivers_signed_payload(store: stores.Store) -> None:
    calls: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500 if len(calls) == 1 else 200)

    clock = Clock()
    sender = WebhookSender(
        store,
        WebhookPolicy(secret="s3cret", allow_private=True, retry_delay=10),
        client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
        clock=clock,
        wakeups=notifier.Notifier(),
    )
    await finished_job(store, "http://hooks.example/cb")
    assert await sender.deliver_due() == 1
    assert await sender.deliver_due() == 0  # second attempt waits retry_delay
    clock.now += 11
    assert await sender.deliver_due() == 1
    assert len(calls) == 2
    body = orjson.loads(calls[1].content)
    assert body["id"] == "j1" and body["status"] == "COMPLETED" and body["input"] == {"a": 1}
    assert body["output"] == {"ok": True} and body["webhook"] == "http://hooks.example/cb"
    assert calls[1].headers["X-Anypod-Delivery-Attempt"] == "2"
    timestamp, mac = (p.split("=", 1)[1] for p in calls[1].headers["X-Anypod-Signature"].split(","))
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + calls[1].content, hashlib.sha256)
    assert mac == expected.hexdigest()
    clock.now += 100
    assert await sender.deliver_due() == 0  # delivered: never again
    await sender.stop()


async def test_gives_up_after_attempts(store: stores.Store) -> None:
    clock = Clock()
    transport = httpx.MockTransport(lambda r: httpx.Response(503))
    sender = WebhookSender(
        store,
        WebhookPolicy(attempts=3, retry_delay=1, allow_private=True),
        client=httpx.AsyncClient(transport=transport),
        clock=clock,
        wakeups=notifier.Notifier(),
    )
    await finished_job(store, "http://hooks.example/cb")
    sent = 0
    for _ in range(6):
        sent += await sender.deliver_due()
        clock.now += 2
    assert sent == 3
    assert await store.purge_finished(T0 + 3600) == 1  # settled, so purgeable
    await sender.stop()


async def test_private_targets_refused_unless_allowed(store: stores.Store) -> None:
    calls: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(receiver)
    sender = WebhookSender(
        store,
        WebhookPolicy(attempts=1),
        clock=Clock(),
        client=httpx.AsyncClient(transport=transport),
        wakeups=notifier.Notifier(),
    )
    await finished_job(store, "http://127.0.0.1:9/cb")
    assert await sender.deliver_due() == 1
    assert calls == []
    await sender.stop()
