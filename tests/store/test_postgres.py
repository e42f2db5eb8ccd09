"""PostgreSQL-only behaviour: NOTIFY across instances, claims across pools, outages, schema."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import pytest

from anypod import errors, jobs
from anypod.endpoints import Endpoint
from anypod.http import create_app
from anypod.service import JobService
from anypod.store import migrations
from tests.postgres import MakeDatabase

asyncpg = pytest.importorskip("asyncpg")

from anypod.store.postgres import PostgresStore, redact  # noqa: E402
from anypod.store.postgres_notifier import (  # noqa: E402
    CONTINUED,
    MAX_MESSAGE_BYTES,
    PostgresNotifier,
    messages,
)

T0 = 1_800_000_000.0


def new_job(job_id: str) -> jobs.NewJob:
    return jobs.NewJob(
        id=job_id,
        endpoint="ep",
        input=orjson.dumps({"n": job_id}),
        created_at=T0,
        policy=jobs.Policy(),
        retention_ms=10_000,
        max_attempts=3,
    )


class Proxy:
    """A TCP forwarder to PostgreSQL that a test can stop (dropping every connection) and
    start again on the same port: a database outage without touching the real server. Or
    ``freeze`` it: a silent partition, where bytes stop flowing and nothing is closed or reset
    (new connections are accepted, then hear nothing), until ``thaw``."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = target
        self.host, self.target_port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    @property
    def url(self) -> str:
        parts = urlsplit(self.target)
        netloc = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        for task in self._pipes:
            task.cancel()  # a frozen pipe would wait for the thaw
        await asyncio.gather(*self._pipes, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(src, dst, self._flowing))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[Proxy]:
    forwarder = Proxy(pg_url)
    await forwarder.start()
    yield forwarder
    await forwarder.stop()


def connected(notifier: PostgresNotifier) -> bool:
    """Read anew (mypy would keep the value an earlier assert narrowed)."""
    return notifier.connected


# --- notifier ----------------------------------------------------------------------------------


async def test_notify_on_one_instance_wakes_a_listener_on_another(pg_url: str) -> None:
    a, b = PostgresNotifier(pg_url), PostgresNotifier(pg_url)
    await a.start()
    await b.start()
    try:
        delays = []
        for i in range(10):
            with b.listen(f"job:{i}") as listener:
                began = time.perf_counter()
                a.notify(f"job:{i}")
                assert await listener.wait(2.0)
                delays.append(time.perf_counter() - began)
        assert statistics.median(delays) < 0.1, delays
    finally:
        await a.stop()
        await b.stop()


async def test_own_notifications_are_dispatched_once(pg_url: str) -> None:
    a = PostgresNotifier(pg_url)
    await a.start()
    try:
        with a.listen("queue:ep") as listener:
            a.notify("queue:ep")
            assert await listener.wait(0.01)  # dispatched locally, at once
            assert not await listener.wait(0.3)  # and not again when NOTIFY echoes back
    finally:
        await a.stop()


async def test_a_burst_of_topics_reaches_the_other_instance(pg_url: str) -> None:
    a, b = PostgresNotifier(pg_url), PostgresNotifier(pg_url)
    await a.start()
    await b.start()
    try:
        topics = [f"job:{i}" for i in range(500)]
        with contextlib.ExitStack() as stack:
            listeners = [stack.enter_context(b.listen(t)) for t in topics]
            for topic in topics:
                a.notify(topic)
            woken = await asyncio.gather(*(lst.wait(3.0) for lst in listeners))
        assert all(woken)
    finally:
        await a.stop()
        await b.stop()


async def test_notifier_reconnects_after_an_outage_and_wakes_waiters(
    pg_url: str, proxy: Proxy
) -> None:
    sender, remote = PostgresNotifier(pg_url), PostgresNotifier(proxy.url, max_backoff=0.2)
    await sender.start()
    await remote.start()
    try:
        assert remote.connected
        with remote.listen("queue:ep") as listener:
            await proxy.stop()
            await asyncio.sleep(0.3)
            assert not connected(remote)
            await proxy.start()
            # notifications sent while it was away are lost: it wakes every waiter on return
            assert await listener.wait(5.0)
            sender.notify("queue:ep")
            assert await listener.wait(2.0)
    finally:
        await sender.stop()
        await remote.stop()


async def test_a_stop_payload_over_the_notify_limit_crosses_whole_and_poisons_nothing(
    pg_url: str,
) -> None:
    a, b = PostgresNotifier(pg_url), PostgresNotifier(pg_url)
    await a.start()
    await b.start()
    try:
        ids = [f"{i:04d}-{'x' * 35}" for i in range(400)]  # 400 ids of 40 chars: 16 kB
        with b.listen("stop:ep:w1") as stops:
            a.notify("stop:ep:w1", ",".join(ids))
            assert await stops.wait(2.0)
            await asyncio.sleep(0.2)  # every part is in: one wake, one payload, in order
        assert stops.payloads == [",".join(ids)]
        with b.listen("queue:ep") as queue:  # and the notifier still serves other topics
            a.notify("queue:ep")
            assert await queue.wait(1.0)
    finally:
        await a.stop()
        await b.stop()


async def test_a_notification_postgres_refuses_is_dropped_alone(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = PostgresNotifier(pg_url), PostgresNotifier(pg_url)
    await a.start()
    await b.start()
    try:
        with b.listen("stop:ep:w1") as bad, b.listen("job:1") as good:
            a.notify("stop:ep:w1", "a NUL \x00 is no text to PostgreSQL")
            a.notify("job:1")  # in the same statement as the refused one
            assert await good.wait(2.0)
            assert not await bad.wait(0.3)
        with b.listen("job:2") as later:
            a.notify("job:2")
            assert await later.wait(1.0)
        assert connected(a)  # kept its connection: no reconnect, no backoff
    finally:
        await a.stop()
        await b.stop()
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].exc_info is None, caplog.text


async def test_a_notification_of_exactly_the_limit_is_sent_whole(pg_url: str) -> None:
    a, b = PostgresNotifier(pg_url), PostgresNotifier(pg_url)
    await a.start()
    await b.start()
    topic = "stop:ep:w1"
    room = MAX_MESSAGE_BYTES - len(topic) - 1
    payload = "é" * (room // 2) + "x" * (room % 2)  # 2-byte characters: bytes, not characters
    assert len(f"{topic}\n{payload}".encode()) == MAX_MESSAGE_BYTES
    try:
        with b.listen(topic) as listener:
            a.notify(topic, payload)
            a.notify(topic, "y" * MAX_MESSAGE_BYTES)  # one item too long: a bare wake-up
            assert await listener.wait(2.0)
            await asyncio.sleep(0.2)
        assert listener.payloads == [payload]
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("item", ["j", "job-id-of-forty-characters-0123456789ab", "é" * 30])
def test_long_payloads_split_between_items_and_join_back(item: str) -> None:
    payload = ",".join(f"{item}{i}" for i in range(2000))
    sent = messages("stop:ep:w", payload)
    assert len(sent) > 1 and all(len(m.encode()) <= MAX_MESSAGE_BYTES for m in sent)
    parts = [m.partition("\n")[2] for m in sent]
    assert all(p.startswith(CONTINUED) for p in parts[:-1])
    assert not parts[-1].startswith(CONTINUED)
    assert ",".join(p.removeprefix(CONTINUED) for p in parts) == payload
    assert messages("stop:ep:w", "a,b") == ["stop:ep:w\na,b"]
    assert messages("x" * (MAX_MESSAGE_BYTES + 1), None) == []


# --- claims ------------------------------------------------------------------------------------


async def test_claims_from_two_pools_never_hand_out_a_job_twice(pg_url: str) -> None:
    async with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        for start in range(0, 2000, 200):
            await asyncio.gather(*(one.submit(new_job(f"j{i}")) for i in range(start, start + 200)))

        async def claimer(store: PostgresStore, name: str) -> list[str]:
            got: list[str] = []
            while batch := await store.claim("ep", 7, jobs.claim(name, T0, 30)):
                got += [j.id for j in batch]
            return got

        stores = [one, two] * 4
        taken = await asyncio.gather(*(claimer(s, f"w{i}") for i, s in enumerate(stores)))
        ids = [job_id for batch in taken for job_id in batch]
        assert len(ids) == 2000 and len(set(ids)) == 2000
        assert sum(1 for batch in taken if batch) > 1  # the claimers really raced
        assert (await one.counts("ep")).in_progress == 2000


# --- outages -----------------------------------------------------------------------------------


async def test_outage_raises_store_unavailable_then_recovers(proxy: Proxy) -> None:
    async with PostgresStore(proxy.url) as store:
        await store.ping()
        await proxy.stop()
        for _ in range(2):
            with pytest.raises(errors.StoreUnavailable):
                await store.ping()
        with pytest.raises(errors.StoreUnavailable):
            await store.submit(new_job("lost"))
        await proxy.start()
        await store.ping()  # the first call after the outage already works
        await store.submit(new_job("after"))
        assert (await store.get("after")) is not None


async def test_api_answers_503_json_while_the_database_is_down(proxy: Proxy) -> None:
    store = PostgresStore(proxy.url)
    service = JobService(store, {"ep": Endpoint(name="ep")})
    app = create_app(service)
    await store.open()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/v2/ep/status/x")).status_code == 404
            await proxy.stop()
            down = await client.post("/v2/ep/run", json={"input": {}})
            assert down.status_code == 503 and "unavailable" in down.json()["error"]
            await proxy.start()
            assert (await client.post("/v2/ep/run", json={"input": {}})).status_code == 200
    finally:
        await store.close()


async def test_a_silent_partition_fails_calls_within_seconds_then_recovers(
    proxy: Proxy,
) -> None:
    store = PostgresStore(proxy.url)
    service = JobService(store, {"ep": Endpoint(name="ep")})
    async with store:
        await store.submit(new_job("before"))
        proxy.freeze()  # packets dropped, nothing reset

        began = time.monotonic()
        assert not (await service.server_health()).store
        assert time.monotonic() - began < 3.0

        began = time.monotonic()
        calls = [store.get("before") for _ in range(15)] + [store.submit(new_job("lost"))]
        failed = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(f, errors.StoreUnavailable) for f in failed), failed
        assert time.monotonic() - began < 6.0

        proxy.thaw()
        deadline = time.monotonic() + 10
        while not (await service.server_health()).store:
            assert time.monotonic() < deadline, "no recovery after the partition healed"
        # no connection went back to the pool mid-conversation: every call works again
        got = await asyncio.gather(*(store.get("before") for _ in range(50)))
        assert all(j is not None and j.id == "before" for j in got)
        await store.submit(new_job("after"))


async def test_sessions_roll_back_when_idle_in_a_transaction(pg_url: str) -> None:
    """A client cut off mid-transaction cannot say goodbye: its locks go after 10 s."""
    async with PostgresStore(pg_url) as store:
        setting = await store._connection_run(
            lambda c: c.fetchval("SHOW idle_in_transaction_session_timeout"), timeout=2
        )
    assert setting == "10s"


async def test_open_while_the_database_is_down_is_store_unavailable(proxy: Proxy) -> None:
    await proxy.stop()
    with pytest.raises(errors.StoreUnavailable):
        await PostgresStore(proxy.url, connect_timeout=1).open()


async def test_close_while_the_database_is_down_returns_promptly(proxy: Proxy) -> None:
    store = PostgresStore(proxy.url)
    await store.open()
    await proxy.stop()
    await asyncio.wait_for(store.close(), 5)
    with pytest.raises(errors.StoreUnavailable, match="closed"):
        await store.ping()


# --- schema ------------------------------------------------------------------------------------


async def test_an_empty_database_needs_anypod_migrate(pg_database: MakeDatabase) -> None:
    url = pg_database(template=False)
    with pytest.raises(errors.SchemaMismatch, match="anypod migrate") as raised:
        await PostgresStore(url).open()
    assert "schema version 0" in str(raised.value)


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    await conn.execute("INSERT INTO anypod_schema (version, name) VALUES (999, 'future')")
    await conn.close()
    for migrate in (False, True):
        with pytest.raises(errors.SchemaMismatch, match="newer than this anypod"):
            await PostgresStore(pg_url, migrate=migrate).open()


async def test_replicas_migrating_at_once_apply_each_version_once(
    pg_database: MakeDatabase,
) -> None:
    url = pg_database(template=False)
    replicas = [PostgresStore(url, migrate=True, min_connections=1) for _ in range(4)]
    await asyncio.gather(*(r.open() for r in replicas))
    try:
        assert await replicas[0].migrate() == []
        conn = await asyncpg.connect(url)
        versions = [r[0] for r in await conn.fetch("SELECT version FROM anypod_schema")]
        await conn.close()
        assert versions == list(range(1, migrations.latest("postgres") + 1))
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


def test_messages_never_show_the_password() -> None:
    shown = redact("postgresql://anypod:s3cret@db.internal:5432/jobs")
    assert shown == "postgresql://anypod:***@db.internal:5432/jobs"
