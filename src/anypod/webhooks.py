"""Durable webhooks: the job row remembers a pending delivery until it succeeds or gives up.

A finished job with a ``webhook`` gets POSTed its status object plus ``input`` (RunPod's
envelope), with Standard Webhooks headers (:mod:`anypod.webhook_signing`). A failed attempt is
retried on a schedule (default, in the spirit of Svix: at once, 5 s, 5 min, 30 min, 2 h, 5 h,
10 h; one attempt per entry). A target that may never be sent to (a refused address, a URL
that cannot be used) fails at once, without retries.

Each delivery is bounded and isolated: it runs in its own task (at most ``concurrency`` at
once), under one deadline for the whole attempt (resolve, connect, send, answer: a target
that drips a byte at a time cannot outlast it), reads the status line and headers of the
reply and never its body, and connects to the address it checked (:mod:`.webhook_targets`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping

import httpx
import orjson

from anypod import errors, jobs, notifier, webhook_signing, webhook_targets
from anypod.protocols.runpod import render
from anypod.store import Store

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE  #: seconds before each attempt
    timeout: float = 10.0  #: the whole of one attempt
    secret: str | None = None  #: signs every endpoint's webhooks ...
    endpoint_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # ... or one's
    allow_private: bool = False
    concurrency: int = 32  #: deliveries in flight at once

    def __post_init__(self) -> None:
        if not self.schedule or self.concurrency < 1:
            raise errors.ConfigError("a webhook schedule needs an attempt and concurrency ≥ 1")

    @property
    def attempts(self) -> int:
        return len(self.schedule)

    def delay_after(self, attempt: int) -> float:
        """Seconds from the failure of attempt ``attempt`` (1-based) to the next one."""
        return self.schedule[attempt] if attempt < len(self.schedule) else 0.0


@dataclasses.dataclass(frozen=True)
class Sent:
    """What one attempt came to: delivered, or why not (``final``: do not retry)."""

    delivered: bool
    reason: str = ""
    final: bool = False


def delivery_id(job: jobs.Job) -> str:
    """``webhook-id``: the same on every retry of one delivery; a ``/retry`` of the job is a
    new delivery (its own id)."""
    return job.id if not job.retries else f"{job.id}.{job.retries}"


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
        resolver: webhook_targets.Resolver = webhook_targets.system_resolver,
        clock: Callable[[], float],
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.policy = policy
        self.wakeups = wakeups
        self.client = client or webhook_targets.http_client(
            timeout=policy.timeout, connections=policy.concurrency
        )
        self.resolver = resolver
        self.clock = clock
        self.interval = interval
        self._keys = _keys(policy)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._deliver_forever(), name="anypod-webhooks")

    async def stop(self) -> None:
        """Stop claiming and abandon deliveries in flight (their claims lapse: they are sent
        again later, by this server or another replica)."""
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    async def _deliver_forever(self) -> None:
        while not self.wakeups.closed:  # closed: shutting down, waits return at once
            if len(self._in_flight) >= self.policy.concurrency:
                await asyncio.wait(
                    self._in_flight, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            with self.wakeups.listen(notifier.WEBHOOKS) as listener:
                if not await self._dispatch_due():
                    await listener.wait(self.interval)

    async def _dispatch_due(self) -> int:
        """Start a task for each due delivery there is room for; the number started."""
        try:
            return len(self._start(await self._claim()))
        except errors.StoreUnavailable:  # the store logs its outage, once
            return 0
        except Exception:
            log.exception("claiming due webhooks failed")
            return 0

    async def deliver_due(self) -> int:
        """Claim the due deliveries there is room for and wait until each is settled."""
        tasks = self._start(await self._claim())
        await asyncio.gather(*tasks)
        return len(tasks)

    async def _claim(self) -> list[jobs.Job]:
        room = self.policy.concurrency - len(self._in_flight)
        if room <= 0:
            return []
        now = self.clock()
        # hidden from other claims until every attempt has surely ended (deadline + margin)
        return await self.store.due_webhooks(now, room, now + self.policy.timeout * 2 + 5)

    def _start(self, due: list[jobs.Job]) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self._deliver(job), name=f"webhook {job.id}") for job in due]
        self._in_flight.update(tasks)
        for task in tasks:
            task.add_done_callback(self._in_flight.discard)
        return tasks

    async def _deliver(self, job: jobs.Job) -> None:
        attempt = job.webhook_attempts + 1
        sent = await self._attempt(job, attempt)
        outcome = self._outcome(attempt, sent)
        if not sent.delivered:
            self._log_failure(job, attempt, sent, outcome)
        try:
            await self.store.webhook_attempted(job.id, outcome)
        except errors.StoreUnavailable:  # the claim lapses; the delivery is retried
            pass
        except Exception:
            log.exception("recording the webhook attempt for job %r failed", job.id)

    def _outcome(self, attempt: int, sent: Sent) -> jobs.WebhookAttempt:
        return jobs.webhook_attempted(
            attempt,
            delivered=sent.delivered,
            max_attempts=attempt if sent.final else self.policy.attempts,
            retry_delay=self.policy.delay_after(attempt),
            now=self.clock(),
        )

    def _log_failure(
        self, job: jobs.Job, attempt: int, sent: Sent, outcome: jobs.WebhookAttempt
    ) -> None:
        if outcome.state is jobs.WebhookState.PENDING:
            log.info("webhook for job %r failed (attempt %d): %s", job.id, attempt, sent.reason)
        else:
            log.warning(
                "webhook for job %r failed after %d attempt(s), giving up: %s",
                job.id,
                attempt,
                sent.reason,
            )

    async def _attempt(self, job: jobs.Job, attempt: int) -> Sent:
        """One attempt, within the deadline; every failure is a :class:`Sent` saying why."""
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self._send(job, attempt)
        except TimeoutError:
            return Sent(False, f"no answer within {self.policy.timeout:g} s")
        except webhook_targets.Refused as exc:
            return Sent(False, f"refused: {exc}", final=True)
        except webhook_targets.Unresolved as exc:
            return Sent(False, str(exc))
        except httpx.HTTPError as exc:
            return Sent(False, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug here must not stop other deliveries
            log.exception("webhook for job %r: unexpected error", job.id)
            return Sent(False, repr(exc))

    async def _send(self, job: jobs.Job, attempt: int) -> Sent:
        try:
            target = webhook_targets.parse(job.webhook or "")
        except ValueError as exc:  # stored before submit checked URLs in full
            return Sent(False, f"unusable URL {job.webhook!r}: {exc}", final=True)
        addresses = await webhook_targets.resolve(
            target, self.resolver, allow_private=self.policy.allow_private
        )
        body = orjson.dumps(render.webhook_payload(job, self.clock()))
        headers = self._headers(job, attempt, body)
        for ip in addresses[:-1]:
            try:
                return await self._post(target, ip, body, headers)
            except httpx.ConnectError:
                continue  # the next address of the name
        return await self._post(target, addresses[-1], body, headers)

    def _headers(self, job: jobs.Job, attempt: int, body: bytes) -> dict[str, str]:
        key = self._keys.get(job.endpoint, self._keys.get(None))
        signed = webhook_signing.headers(delivery_id(job), int(self.clock()), body, key)
        return {
            "Content-Type": "application/json",
            "X-Anypod-Job-Id": job.id,
            "X-Anypod-Delivery-Attempt": str(attempt),
            **signed,
        }

    async def _post(
        self,
        target: webhook_targets.Target,
        ip: webhook_targets.IPAddress,
        body: bytes,
        headers: dict[str, str],
    ) -> Sent:
        """POST to ``ip``; only the status line and headers of the reply are read."""
        request = webhook_targets.addressed(target, ip)
        async with self.client.stream(
            "POST",
            request.url,
            content=body,
            headers={**headers, **request.headers},
            extensions=request.extensions,
        ) as reply:
            if reply.is_success:
                return Sent(True)
            return Sent(False, f"{ip} answered {reply.status_code}")


def _keys(policy: WebhookPolicy) -> dict[str | None, bytes]:
    """Signing keys by endpoint name (None: every other endpoint); ConfigError if unusable."""
    found: dict[str | None, bytes] = {}
    if policy.secret:
        found[None] = webhook_signing.key(policy.secret, source="ANYPOD_WEBHOOK_SECRET")
    for endpoint, secret in policy.endpoint_secrets.items():
        found[endpoint] = webhook_signing.key(secret, source=f"endpoints.{endpoint}.webhook_secret")
    return found
