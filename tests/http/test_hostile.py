"""Bad input of every kind gets a 4xx JSON error naming the field; odd but valid input is kept
exactly. (Every reply here is also checked against the route table by the ``api`` fixture;
bad submissions are in test_client_api.py.)"""

from __future__ import annotations

import orjson
import pytest

from anypod.http.routing import Limits
from tests.http.conftest import Api


async def test_odd_but_valid_input_round_trips_exactly(api: Api) -> None:
    odd = {"nul": "a\u0000b", "emoji": "\U0001f600", "deep": [[[[[1]]]]], "list": list(range(300))}
    job_id = (await api.http.post("/v2/ep/run", json={"input": odd})).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json() == {"id": job_id, "input": odd}


async def test_a_declared_length_over_the_limit_is_refused_unread(api: Api) -> None:
    reply = await api.http.post(
        "/v2/ep/run", content=b"{}", headers={"Content-Length": "999999999"}
    )
    assert reply.status_code == 413 and reply.json()["field"] == "body"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v2/ep/job-take-batch/w1?batch_size=0", "batch_size"),
        ("/v2/ep/job-take-batch/w1?batch_size=x", "batch_size"),
        ("/v2/ep/ping/w1?gpu=a%00b", "gpu"),
        ("/v2/ep/ping/w%00", "worker_id"),
    ],
)
async def test_bad_worker_queries(api: Api, path: str, field: str) -> None:
    reply = await api.http.get(path, headers=api.worker_headers())
    assert reply.status_code == 400 and reply.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"output": ' + b"[" * 300 + b"]" * 300 + b"}", "output"),
        (b'{"output": 1e999}', "body"),
        (b'{"stopPod": "maybe"}', "stopPod"),
        (b"", "body"),
    ],
)
async def test_bad_results_change_nothing(api: Api, body: bytes, field: str) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}", content=body, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == field, reply.text
    assert (await api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_PROGRESS"


async def test_odd_ids_are_404_json(api: Api) -> None:
    for job_id in ("..%2F..%2Fetc", "\u00e9t\u00e9", "x" * 2000):
        reply = await api.http.get(f"/v2/ep/status/{job_id}")
        assert reply.status_code == 404, job_id
        assert reply.json()["code"] in ("job_not_found", "not_found"), job_id  # no route


async def test_a_huge_batch_of_results_is_refused(api: Api) -> None:
    items = orjson.dumps([{"id": f"j{i}", "result": {}} for i in range(1500)])
    api.app.limits = type(api.app.limits)(report=len(items) + 1)
    reply = await api.http.post(
        "/v2/ep/job-done-batch/w1", content=items, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == "body"


async def test_nul_in_ids_and_text_is_400_naming_the_field(api: Api) -> None:
    """PostgreSQL's text columns cannot hold NUL: refused at the edge, on every store."""
    status = await api.http.get("/v2/ep/status/a%00b")
    assert status.status_code == 400 and status.json()["field"] == "job_id"
    hook = await api.http.post("/v2/ep/run", json={"input": {}, "webhook": "http://a\u0000b/x"})
    assert hook.status_code == 400 and hook.json()["field"] == "webhook"
    batch = await api.http.post(
        "/v2/ep/job-done-batch/w1",
        json=[{"id": "a\u0000b", "result": {}}],
        headers=api.worker_headers(),
    )
    assert batch.status_code == 400 and batch.json()["field"] == "[0].id"


async def test_long_ping_labels_are_kept_short(api: Api) -> None:
    reply = await api.http.get("/v2/ep/ping/w1?gpu=" + "g" * 5000, headers=api.worker_headers())
    assert reply.status_code == 200
    (worker,) = await api.service.store.workers("ep", 0)
    assert worker.gpu == "g" * 300


async def test_head_serves_only_what_changes_nothing(api: Api) -> None:
    assert (await api.http.head("/health")).status_code == 200
    taken = await api.http.head("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.status_code == 405  # a HEAD must not take a job


# --- JSON the server could not store or send on (issue 8) -----------------------------------


def nested(levels: int) -> bytes:
    """A ``/run`` body nesting exactly ``levels`` deep (the body is one), objects and lists in
    turn."""
    inner = b"[]"
    for i in range(levels - 3):
        inner = b'{"k": %s}' % inner if i % 2 else b"[%s]" % inner
    return b'{"input": {"a": %s}}' % inner


@pytest.mark.parametrize("levels", [129, 200, 254, 255, 300, 1000, 1024])
@pytest.mark.parametrize("path", ["/v2/ep/run", "/v2/ep/runsync?wait=0"])
async def test_too_deep_json_is_400_naming_the_field(api: Api, path: str, levels: int) -> None:
    """Up to 1,024 levels orjson decodes but (past 254) cannot encode: it was a 500."""
    api.app.limits = Limits(run=1 << 20, runsync=1 << 20)
    assert orjson.loads(nested(levels))  # valid JSON: orjson reads it
    reply = await api.http.post(path, content=nested(levels))
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == "input" and "128 levels" in reply.json()["error"]
    assert (await api.http.get("/v2/ep/health")).json()["jobs"]["inQueue"] == 0


async def test_json_128_levels_deep_round_trips(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", content=nested(128))).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json() == {"id": job_id, "input": orjson.loads(nested(128))["input"]}


async def test_strings_cannot_hide_depth_nor_fake_it(api: Api) -> None:
    """Brackets in strings count for nothing: balanced-looking text around 200 real levels
    is refused, a string of 300 brackets is just text."""
    # 198 levels, but with the strings' brackets counted never more than 126 (nor unbalanced)
    hidden = b'{"input": {"a": %s"%s", %s%s, "%s"%s}}' % (
        b"[" * 98,
        b"]" * 72,
        b"[" * 98,
        b"]" * 98,
        b"[" * 72,
        b"]" * 98,
    )
    assert orjson.loads(hidden)
    reply = await api.http.post("/v2/ep/run", content=hidden)
    assert reply.status_code == 400 and reply.json()["field"] == "input", reply.text
    brackets = {"s": "[{" * 300, "q": '\\"[[[' * 50, "a": [[1]]}
    reply = await api.http.post("/v2/ep/run", json={"input": brackets})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("levels", [130, 300, 1000])
async def test_too_deep_results_and_chunks_are_400(api: Api, levels: int) -> None:
    """A job-done output past 254 levels was a 500 (and the worker retried it for 300 s)."""
    api.app.limits = Limits(run=1 << 20)
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    deep = b"[" * levels + b"]" * levels
    for route, body, field in [
        ("job-done", b'{"output": %s}' % deep, "output"),
        ("job-done", b'{"error": %s}' % deep, "error"),
        ("job-stream", b'{"output": %s}' % deep, "output"),
        (
            "job-done-batch",
            b'[{"id": "%s", "result": {"output": %s}}]' % (job_id.encode(), deep),
            "[0]",
        ),
    ]:
        reply = await api.http.post(
            f"/v2/ep/{route}/w1" + ("" if route == "job-done-batch" else f"/{job_id}"),
            content=body,
            headers=api.worker_headers(),
        )
        assert reply.status_code == 400 and reply.json()["field"] == field, (route, reply.text)
    assert (await api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_PROGRESS"


@pytest.mark.parametrize(
    ("number", "field"),
    [
        (b"18446744073709551616", "input"),  # 2**64
        (b"-9223372036854775809", "input"),  # -2**63 - 1
        (b"123456789012345678901234567890", "input"),
        (b"1" + b"0" * 300, "input"),
    ],
)
async def test_integers_beyond_64_bits_are_400_not_rounded(
    api: Api, number: bytes, field: str
) -> None:
    """orjson reads them as floats: the job would have run on another number."""
    reply = await api.http.post("/v2/ep/run", content=b'{"input": {"n": [1, %s]}}' % number)
    assert reply.status_code == 400 and reply.json()["field"] == field, reply.text
    assert "64 bits" in reply.json()["error"]


async def test_64_bit_integers_and_long_digit_strings_are_kept_exactly(api: Api) -> None:
    exact = {
        "u64": 2**64 - 1,
        "i64": -(2**63),
        "id": "12345678901234567890123",
        "pi": 3.14159265358979323846264338,
        "big float": 1.8446744073709552e19,
    }
    job_id = (await api.http.post("/v2/ep/run", json={"input": exact})).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json() == {"id": job_id, "input": exact}
    big = b'{"output": {"n": 99999999999999999999}}'
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}", content=big, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == "output"


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://[::1]x/", "http://[zz]/", "http://a:99999/", "http://a:x/"],
)
async def test_malformed_webhook_urls_are_400(api: Api, url: str) -> None:
    reply = await api.http.post("/v2/ep/run", json={"input": {}, "webhook": url})
    assert reply.status_code == 400 and reply.json()["field"] == "webhook", reply.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"input": {"a": "\\ud800"}}',  # a lone surrogate
        b'{"input": {"\\udfff": 1}}',
        b'{"input": {"a": "\xff\xfe"}}',  # not UTF-8
        b'{"input": {"a": "\xed\xa0\x80"}}',  # a surrogate, UTF-8 encoded
        b" \n\t ",
        b"null",
        b'"input"',
        b"[{}]",
        b'{"input": {"a": 1e999}}',
        b'{"input": {}}{"input": {}}',
    ],
)
async def test_unusable_bodies_are_400_naming_the_body(api: Api, body: bytes) -> None:
    reply = await api.http.post("/v2/ep/run", content=body)
    assert reply.status_code == 400 and reply.json()["field"] == "body", reply.text
    assert reply.json()["code"] == "invalid_request"


# --- memory: what a body may cost once decoded (issue 9) -------------------------------------


async def test_more_values_than_the_limit_is_413_before_decoding(api: Api) -> None:
    api.app.limits = Limits(run=1 << 20, json_values=1000)
    # 995 numbers, the list and two objects: 998 values, and 2 keys
    at_limit = b'{"input": {"a": [%s]}}' % b",".join([b"1"] * 995)
    assert (await api.http.post("/v2/ep/run", content=at_limit)).status_code == 200
    for over in (
        b'{"input": {"a": [%s]}}' % b",".join([b"1"] * 996),
        b'{"input": {"a": [%s]}}' % b",".join([b"{}"] * 996),
        b'{"input": {%s}}' % b",".join(b'"k%d": 1' % i for i in range(500)),  # keys count
    ):
        reply = await api.http.post("/v2/ep/run", content=over)
        assert reply.status_code == 413, reply.text
        assert reply.json()["field"] == "body" and "1000 JSON values" in reply.json()["error"]


async def test_commas_and_brackets_in_text_are_not_values(api: Api) -> None:
    api.app.limits = Limits(run=1 << 20, json_values=1000)
    text = {"csv": "1,2,[3],{4}\n" * 2000, "quoted": '\\",' * 2000, "a": list(range(500))}
    reply = await api.http.post("/v2/ep/run", json={"input": text})
    assert reply.status_code == 200, reply.text
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json()["input"] == text


async def test_a_batch_over_the_cap_is_refused_before_its_items_are_read(api: Api) -> None:
    """Counted first: 200k items were each made into a model before max_length refused them."""
    items = orjson.dumps([{"id": i, "result": 5} for i in range(1025)])  # every item invalid
    reply = await api.http.post(
        "/v2/ep/job-done-batch/w1", content=items, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == "body", reply.text
    assert "at most 1024 results" in reply.json()["error"]
