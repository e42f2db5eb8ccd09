"""Webhook delivery against a real SQLite store; the receiver is an httpx MockTransport (it sees
the address connected to), names are resolved by a scripted resolver. Signatures are checked
with the reference ``standardwebhooks`` verifier."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from anypod import errors, jobs, notifier
from anypod import store as stores
from anypod.webhooks import WebhookPolicy, WebhookSender
from tests.clock import Clock

HOLDER = jobs.Holder(worker_id="w", endpoint="ep")
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PUBLIC = "93.184.216.34"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[stores.Store]:
    async with stores.from_url(f"sqlite:///{tmp_path / 'w.db'}", migrate=True) as opened:
        yield opened


async def finished_job(
    store: stores.Store, webhook: str, *, at: float, job_id: str = "j1", endpoint: str = "ep"
) -> None:
    await store.submit(
        jobs.NewJob(
            id=job_id,
            endpoint=endpoint,
            input=b'{"a":1}',
            policy=jobs.Policy(),
            retention_ms=60_000,
            max_attempts=3,
            created_at=at,
            webhook=webhook,
        )
    )
    await store.claim(endpoint, 1, jobs.claim("w", at, 30))
    holder = jobs.Holder(worker_id="w", endpoint=endpoint)
    await store.end(job_id, jobs.finish(jobs.Result(output=b'{"ok":true}'), holder, at))


async def resolve_public(host: str, port: int) -> Sequence[str]:
    return [PUBLIC]


class Receiver:
    """A MockTransport handler answering from a script of status codes (then 200)."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, headers=self.headers)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def sender_for(
    store: stores.Store, receiver: Receiver, clock: Clock, **policy: Any
) -> WebhookSender:
    resolver = policy.pop("resolver", resolve_public)
    return WebhookSender(
        store,
        WebhookPolicy(**policy),
        client=receiver.client(),
        resolver=resolver,
        clock=clock,
        wakeups=notifier.Notifier(),
    )


def plain(headers: httpx.Headers) -> dict[str, str]:
    return dict(headers.items())


async def state(store: stores.Store, job_id: str = "j1") -> tuple[Any, int]:
    job = await store.get(job_id)
    assert job is not None
    return job.webhook_state, job.webhook_attempts


async def test_signed_per_standard_webhooks_with_one_id_across_retries(
    store: stores.Store,
) -> None:
    receiver = Receiver(500)
    clock = Clock(time.time())  # the verifier checks the timestamp against the real time
    sender = sender_for(store, receiver, clock, secret=SECRET, schedule=(0, 10))
    await finished_job(store, "http://hooks.example/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    assert await sender.deliver_due() == 0  # the second attempt waits for schedule[1]
    clock.now += 11
    assert await sender.deliver_due() == 1
    first, second = receiver.calls
    for call in (first, second):
        body = Webhook(SECRET).verify(call.content, plain(call.headers))
        assert body["id"] == "j1" and body["status"] == "COMPLETED" and body["input"] == {"a": 1}
        assert body["output"] == {"ok": True} and body["webhook"] == "http://hooks.example/cb"
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "j1"
    assert second.headers["X-Anypod-Delivery-Attempt"] == "2"
    assert "X-Anypod-Signature" not in second.headers
    tampered = plain(second.headers) | {"webhook-id": "other"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(second.content, tampered)
    clock.now += 100
    assert await sender.deliver_due() == 0  # delivered: never again
    assert await state(store) == (jobs.WebhookState.DELIVERED, 2)
    await sender.stop()


async def test_a_secret_without_prefix_is_the_raw_key_and_an_endpoint_may_have_its_own(
    store: stores.Store,
) -> None:
    receiver = Receiver()
    clock = Clock(time.time())
    own = "whsec_" + base64.b64encode(b"other-endpoint-key-0123456789").decode()
    sender = sender_for(store, receiver, clock, secret="s3cret", endpoint_secrets={"vip": own})
    await finished_job(store, "http://hooks.example/a", at=clock.now)
    await finished_job(store, "http://hooks.example/b", at=clock.now, job_id="j2", endpoint="vip")
    assert await sender.deliver_due() == 2
    by_job = {c.headers["X-Anypod-Job-Id"]: c for c in receiver.calls}
    Webhook(b"s3cret").verify(by_job["j1"].content, plain(by_job["j1"].headers))
    Webhook(own).verify(by_job["j2"].content, plain(by_job["j2"].headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(b"s3cret").verify(by_job["j2"].content, plain(by_job["j2"].headers))
    await sender.stop()


def test_an_unusable_secret_refuses_to_start(store: stores.Store) -> None:
    for secret in ("whsec_!!!not base64", "whsec_"):
        with pytest.raises(errors.ConfigError, match="ANYPOD_WEBHOOK_SECRET"):
            sender_for(store, Receiver(), Clock(), secret=secret)


async def test_unsigned_deliveries_still_carry_id_and_timestamp(store: stores.Store) -> None:
    receiver = Receiver()
    clock = Clock(time.time())
    sender = sender_for(store, receiver, clock)
    await finished_job(store, "http://hooks.example/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    (call,) = receiver.calls
    assert call.headers["webhook-id"] == "j1"
    assert call.headers["webhook-timestamp"] == str(int(clock.now))
    assert "webhook-signature" not in call.headers
    await sender.stop()


async def test_retries_follow_the_schedule_and_stop_after_its_length(store: stores.Store) -> None:
    receiver = Receiver(*[503] * 10)
    clock = Clock()
    sender = sender_for(store, receiver, clock, schedule=(0, 5, 60))
    await finished_job(store, "http://hooks.example/cb", at=clock.now)
    start, sent_at = clock.now, []
    for _ in range(200):
        if await sender.deliver_due():
            sent_at.append(clock.now - start)
        clock.now += 1
    assert sent_at == [0, 5, 65]  # at once, 5 s after the first failure, 60 s after the second
    assert await state(store) == (jobs.WebhookState.FAILED, 3)
    await sender.stop()


async def test_a_private_target_fails_at_once_without_using_attempts(
    store: stores.Store, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()

    async def resolve_loopback(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    clock = Clock()
    sender = sender_for(store, receiver, clock, resolver=resolve_loopback)
    await finished_job(store, "http://internal.example/cb", at=clock.now)
    with caplog.at_level(logging.WARNING, logger="anypod.webhooks"):
        assert await sender.deliver_due() == 1
    assert receiver.calls == []
    assert await state(store) == (jobs.WebhookState.FAILED, 1)  # of 7 attempts: no retries
    assert "127.0.0.1, a loopback address" in caplog.text
    clock.now += 86_400
    assert await sender.deliver_due() == 0
    await sender.stop()


async def test_private_targets_are_allowed_in_development_mode(store: stores.Store) -> None:
    receiver = Receiver()
    clock = Clock()
    sender = sender_for(store, receiver, clock, allow_private=True)
    await finished_job(store, "http://127.0.0.1:9/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    assert [str(c.url) for c in receiver.calls] == ["http://127.0.0.1:9/cb"]
    assert await state(store) == (jobs.WebhookState.DELIVERED, 1)
    await sender.stop()


async def test_the_checked_address_is_the_one_connected_to(store: stores.Store) -> None:
    """DNS rebinding: a name that answers public for the check and loopback afterwards is
    resolved once; the request goes to the public address and still names the host."""
    answers = [[PUBLIC], ["127.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return answers.pop(0)

    receiver = Receiver()
    clock = Clock()
    sender = sender_for(store, receiver, clock, resolver=rebinding)
    await finished_job(store, "https://rebind.example:8443/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    (call,) = receiver.calls
    assert call.url.host == PUBLIC and call.url.port == 8443 and call.url.path == "/cb"
    assert call.headers["Host"] == "rebind.example:8443"
    assert call.extensions["sni_hostname"] == "rebind.example"
    assert asked == ["rebind.example"]
    await sender.stop()


async def test_a_name_that_does_not_resolve_is_not_sent_and_is_retried(
    store: stores.Store,
) -> None:
    async def nxdomain(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    receiver = Receiver()
    clock = Clock()
    sender = sender_for(store, receiver, clock, resolver=nxdomain)
    await finished_job(store, "http://gone.example/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    assert receiver.calls == []
    assert await state(store) == (jobs.WebhookState.PENDING, 1)
    await sender.stop()


async def test_redirects_are_not_followed(store: stores.Store) -> None:
    receiver = Receiver(302, headers={"Location": "http://127.0.0.1/admin"})
    clock = Clock()
    sender = sender_for(store, receiver, clock)
    await finished_job(store, "http://hooks.example/cb", at=clock.now)
    assert await sender.deliver_due() == 1
    assert [c.url.host for c in receiver.calls] == [PUBLIC]
    assert await state(store) == (jobs.WebhookState.PENDING, 1)
    await sender.stop()


async def test_a_stored_url_that_cannot_be_used_fails_at_once(store: stores.Store) -> None:
    """A row stored before submit checked URLs in full: given up on, not re-claimed forever."""
    receiver = Receiver()
    clock = Clock()
    sender = sender_for(store, receiver, clock)
    await finished_job(store, "http://a b.example/\ncb", at=clock.now)
    assert await sender.deliver_due() == 1
    assert receiver.calls == []
    assert await state(store) == (jobs.WebhookState.FAILED, 1)
    await sender.stop()


async def test_the_payload_is_runpods_envelope(store: stores.Store) -> None:
    receiver = Receiver()
    clock = Clock()
    sender = sender_for(store, receiver, clock)
    await finished_job(store, "http://hooks.example/cb", at=clock.now)
    await sender.deliver_due()
    body = orjson.loads(receiver.calls[0].content)
    assert {"id", "status", "output", "input", "webhook"} <= set(body)
    assert receiver.calls[0].headers["Content-Type"] == "application/json"
    await sender.stop()
