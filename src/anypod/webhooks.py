"""Durable webhooks: the job row remembers a pending delivery until it succeeds or gives up.

A finished job with a ``webhook`` gets POSTed its status object plus ``input`` (RunPod's
envelope). Failures retry with a delay, up to ``attempts`` in all (RunPod: 3, 10 s apart). With
a secret set, each delivery is signed: ``X-Anypod-Signature: t=<unix>,v1=<hex hmac-sha256 of
"<t>.<body>">``. Private, loopback and link-local targets are refused unless allowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import orjson

from anypod import errors, jobs, notifier
from anypod.protocols.runpod import render
from anypod.store import Store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookPolicy:
    attempts: int = 3
    retry_delay: float = 10.0
    timeout: float = 10.0
    secret: str | None = None
    allow_private: bool = False


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


async def is_private_target(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            return True
    return False


class WebhookSender:
    """Delivers due webhooks: woken when a job with a webhook ends, and at least every
    ``interval`` seconds for retries."""

    name = "webhooks"

    def __init__(
        self,
        store: Store,
        policy: WebhookPolicy,
        *,
        wakeups: notifier.Notifier,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float],
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.policy = policy
        self.wakeups = wakeups
        self.client = client or httpx.AsyncClient(timeout=policy.timeout)
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._deliver_forever(), name="anypod-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.aclose()

    async def _deliver_forever(self) -> None:
        while not self.wakeups.closed:  # closed: shutting down, waits return at once
            with self.wakeups.listen(notifier.WEBHOOKS) as listener:
                try:
                    busy = await self.deliver_due()
                except errors.StoreUnavailable:  # the store logs its outage, once
                    busy = 0
                except Exception:
                    log.exception("webhook delivery failed")
                    busy = 0
                if not busy:
                    await listener.wait(self.interval)

    async def deliver_due(self, limit: int = 64) -> int:
        now = self.clock()
        due = await self.store.due_webhooks(now, limit, now + self.policy.timeout * 2)
        await asyncio.gather(*(self._deliver(job) for job in due))
        return len(due)

    async def _deliver(self, job: jobs.Job) -> None:
        assert job.webhook is not None
        attempt = job.webhook_attempts + 1
        outcome = jobs.webhook_attempted(
            attempt,
            delivered=await self._post(job, attempt),
            max_attempts=self.policy.attempts,
            retry_delay=self.policy.retry_delay,
            now=self.clock(),
        )
        if outcome.state is jobs.WebhookState.FAILED:
            log.warning("webhook for job %s abandoned after %d attempts", job.id, attempt)
        await self.store.webhook_attempted(job.id, outcome)

    async def _post(self, job: jobs.Job, attempt: int) -> bool:
        """One delivery attempt; any failure (refused, unreachable, unusable URL) is False."""
        try:
            return await self._attempt(job, attempt)
        except Exception as exc:  # e.g. a URL the HTTP client cannot use: count it, go on
            log.info("webhook for job %r failed (attempt %d): %r", job.id, attempt, exc)
            return False

    async def _attempt(self, job: jobs.Job, attempt: int) -> bool:
        url = job.webhook or ""
        if not self.policy.allow_private and await is_private_target(url):
            log.warning("webhook for job %r refused: %r is a private address", job.id, url)
            return False
        body = orjson.dumps(render.webhook_payload(job, self.clock()))
        headers = {
            "Content-Type": "application/json",
            "X-Anypod-Job-Id": job.id,
            "X-Anypod-Delivery-Attempt": str(attempt),
        }
        if self.policy.secret:
            headers["X-Anypod-Signature"] = sign(self.policy.secret, int(self.clock()), body)
        reply = await self.client.post(url, content=body, headers=headers)
        return reply.is_success
