"""Webhook delivery to real HTTP targets on loopback sockets (asyncio servers started by each
test): a reply is never read past its headers, one attempt has one deadline, one slow target
never delays another, and the connection goes to the checked IP under the target's name (Host
header, TLS server name and certificate)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from anypod import jobs, notifier, webhook_targets
from anypod import store as stores
from anypod.webhooks import WebhookPolicy, WebhookSender

GiB = 1024**3
MiB = 1024**2
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[stores.Store]:
    async with stores.from_url(f"sqlite:///{tmp_path / 'w.db'}", migrate=True) as opened:
        yield opened


async def finished_job(store: stores.Store, job_id: str, webhook: str) -> None:
    now = time.time()
    new = jobs.NewJob(
        id=job_id,
        endpoint="ep",
        input=b"{}",
        policy=jobs.Policy(),
        retention_ms=60_000,
        max_attempts=3,
        created_at=now,
        webhook=webhook,
    )
    await store.submit(new)
    await store.claim("ep", 1, jobs.claim("w", now, 30))
    holder = jobs.Holder(worker_id="w", endpoint="ep")
    await store.end(job_id, jobs.finish(jobs.Result(output=b"1"), holder, now))


async def webhook_state(store: stores.Store, job_id: str) -> tuple[Any, int]:
    job = await store.get(job_id)
    assert job is not None
    return job.webhook_state, job.webhook_attempts


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    return head, await reader.readexactly(length)


class Target:
    """A loopback HTTP target running ``handler`` per connection; on exit it stops them (they
    watch ``stopping``) and closes every connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls = handler, tls
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer, self.stopping)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Target:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        await self.server.wait_closed()


def sender_for(store: stores.Store, **policy: Any) -> WebhookSender:
    resolver = policy.pop("resolver", webhook_targets.system_resolver)
    client = policy.pop("client", None)
    return WebhookSender(
        store,
        WebhookPolicy(allow_private=True, **policy),
        wakeups=notifier.Notifier(),
        client=client,
        resolver=resolver,
        clock=time.time,
        interval=0.05,
    )


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: asyncio.Event) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()


def rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples this process's resident memory while it runs."""

    def __init__(self) -> None:
        self.start = self.peak = rss()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss())
            await asyncio.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_a_gigabyte_reply_is_not_read(store: stores.Store) -> None:
    sent = 0
    hung_up = asyncio.Event()

    async def gigabyte(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: asyncio.Event
    ) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GiB)
        chunk = b"x" * MiB
        try:
            while sent < GiB:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            hung_up.set()

    sender = sender_for(store)
    async with Target(gigabyte) as target:
        await finished_job(store, "j1", f"http://127.0.0.1:{target.port}/cb")
        with PeakRss() as rss:
            assert await sender.deliver_due() == 1
            await asyncio.wait_for(hung_up.wait(), 30)  # we hung up; it did not finish sending
    assert await webhook_state(store, "j1") == (jobs.WebhookState.DELIVERED, 1)
    assert sent < 64 * MiB, sent  # what the sockets' buffers took before we hung up
    assert rss.peak - rss.start < 128 * MiB, (rss.start, rss.peak)
    await sender.stop()


def dripping(connected: asyncio.Event) -> Handler:
    """A target that answers one header byte every 0.1 s until stopped (every read succeeds)."""

    async def drip(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stopping: asyncio.Event
    ) -> None:
        await read_request(reader)
        connected.set()
        writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not stopping.is_set():
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.1)

    return drip


async def test_a_dripping_target_is_cut_off_at_the_deadline(store: stores.Store) -> None:
    connected = asyncio.Event()
    sender = sender_for(store, timeout=1.0, schedule=(0, 3600))
    async with Target(dripping(connected)) as target:
        await finished_job(store, "slow", f"http://127.0.0.1:{target.port}/cb")
        started = time.monotonic()
        assert await sender.deliver_due() == 1  # httpx's timeout is per read: it never fires
        assert connected.is_set()
        assert time.monotonic() - started < 20  # the 1 s deadline ended it, on any machine
    assert await webhook_state(store, "slow") == (jobs.WebhookState.PENDING, 1)
    await sender.stop()


async def test_a_slow_target_does_not_delay_another_webhook(store: stores.Store) -> None:
    connected = asyncio.Event()
    sender = sender_for(store, timeout=60.0)
    async with Target(dripping(connected)) as slow, Target(ok) as fast:
        await sender.start()
        try:
            await finished_job(store, "slow", f"http://127.0.0.1:{slow.port}/cb")
            await asyncio.wait_for(connected.wait(), 20)  # the slow one is being delivered
            await finished_job(store, "fast", f"http://127.0.0.1:{fast.port}/cb")
            for _ in range(200):  # up to 10 s, far under the slow delivery's 60 s deadline
                if (await webhook_state(store, "fast"))[0] is jobs.WebhookState.DELIVERED:
                    break
                await asyncio.sleep(0.05)
            assert await webhook_state(store, "fast") == (jobs.WebhookState.DELIVERED, 1)
            assert await webhook_state(store, "slow") == (jobs.WebhookState.PENDING, 0)
        finally:
            await sender.stop()


async def test_the_request_reaches_the_resolved_ip_naming_the_host(store: stores.Store) -> None:
    heads: list[str] = []

    async def record(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: asyncio.Event
    ) -> None:
        head, _body = await read_request(reader)
        heads.append(head)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def hook_test(host: str, port: int) -> Sequence[str]:
        assert host == "hook.test"
        return ["127.0.0.1"]

    sender = sender_for(store, resolver=hook_test)
    async with Target(record) as target:
        await finished_job(store, "j1", f"http://hook.test:{target.port}/cb?x=1")
        assert await sender.deliver_due() == 1
    (head,) = heads
    assert head.startswith("POST /cb?x=1 HTTP/1.1\r\n")
    assert f"\r\nHost: hook.test:{target.port}\r\n" in head
    assert await webhook_state(store, "j1") == (jobs.WebhookState.DELIVERED, 1)
    await sender.stop()


def certificate(name: str, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for ``name``: (cert file, key file, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem


async def test_tls_names_the_host_to_the_checked_ip(store: stores.Store, tmp_path: Path) -> None:
    """Connected to 127.0.0.1, the TLS server name is the host's and its certificate is
    verified against that name."""
    cert_file, key_file, pem = certificate("hook.test", tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    names: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = sni

    async def hook_test(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    trusting = ssl.create_default_context(cadata=pem.decode())
    client = webhook_targets.http_client(timeout=10, connections=4, verify=trusting)
    sender = sender_for(store, resolver=hook_test, client=client)
    async with Target(ok, tls=server_tls) as target:
        await finished_job(store, "j1", f"https://hook.test:{target.port}/cb")
        assert await sender.deliver_due() == 1
    assert names == ["hook.test"]
    assert await webhook_state(store, "j1") == (jobs.WebhookState.DELIVERED, 1)
    await sender.stop()
