"""``moments deliver``'s delivery of one record and its batches, on fakes (no Kafka, no HTTP):
what each answer becomes, what is written where, and which offsets are safe to commit."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from commands.deliver.batches import Batch
from commands.deliver.delivery import Deliverer, Inbound, Outcome
from commands.deliver.http import Answer, HttpPoster, new_session, without_url
from commands.deliver.metrics import build_deliver_metrics
from domain.delivery.endpoints import parse_endpoints
from domain.delivery.records import parse_dead_letter, retry_state
from domain.delivery.schedule import RetrySchedule
from domain.wording.kinds import KINDS

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW_MS = 1_800_000_000_000
TIERS = ("p.deliver.crm.retry.5s", "p.deliver.crm.retry.1m")


def _event(account: str = "a1", kind: str = "threshold-hit", plan: str = "starter") -> bytes:
    return orjson.dumps(
        {
            "event_id": f"id-{account}-{kind}",
            "kind": kind,
            "account_id": account,
            "plan": {"id": plan},
            "emitted_at": "2027-01-15T07:59:59Z",
        }
    )


class FakePoster:
    def __init__(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer:
        self.sent.append((url, body, dict(headers)))
        return self.answers.pop(0)


class FakeRecorder:
    def __init__(self) -> None:
        self.written: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def write(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        self.written.append((topic, key, value, list(headers)))


def _deliverer(answers: Sequence[Answer], **endpoint: Any) -> Deliverer:
    entry = {"name": "crm", "url": "http://h/x", "kinds": ["threshold-hit"], "secret": SECRET}
    entry.update(endpoint)
    (ep,) = parse_endpoints({"endpoints": [entry]}, {}, KINDS)
    return Deliverer(
        endpoint=ep,
        schedule=RetrySchedule((5.0, 60.0)),
        tier_topics=TIERS,
        dlq_topic="p.deliver.dlq",
        poster=FakePoster(answers),
        recorder=FakeRecorder(),
        metrics=build_deliver_metrics(CollectorRegistry(), ["crm"], ["5s", "1m"]),
        now_ms=lambda: NOW_MS,
        spread=lambda: 0.0,
    )


def _record(
    value: bytes | None, topic: str = "p.threshold-hit", offset: int = 0, **kw: Any
) -> Inbound:
    return Inbound(topic, 0, offset, b"a1", value, **kw)


def _count(d: Deliverer, outcome: str) -> float:
    return d.metrics.deliveries.labels(endpoint="crm", outcome=outcome)._value.get()  # type: ignore[attr-defined]


async def test_a_2xx_is_delivered_signed() -> None:
    d = _deliverer([Answer(204)])
    assert await d.deliver(_record(_event())) == "delivered"
    ((url, body, headers),) = d.poster.sent  # type: ignore[attr-defined]
    assert url == "http://h/x" and body == _event()
    assert headers["webhook-timestamp"] == str(NOW_MS // 1000)
    when = datetime.fromtimestamp(NOW_MS // 1000, UTC)
    assert headers["webhook-signature"] == Webhook(SECRET).sign(headers["webhook-id"], when, body)
    assert headers["webhook-id"] == "id-a1-threshold-hit"
    assert d.recorder.written == []  # type: ignore[attr-defined]
    assert _count(d, "delivered") == 1
    latency = d.metrics.latency.labels(endpoint="crm")._sum.get()  # type: ignore[attr-defined]
    assert latency == pytest.approx(1.0)


async def test_events_the_endpoint_does_not_want_are_skipped() -> None:
    d = _deliverer([], plans=["growth"])
    assert await d.deliver(_record(_event())) == "skipped"
    assert await d.deliver(_record(_event(kind="milestone"))) == "skipped"
    assert await d.deliver(_record(None)) == "skipped"
    assert d.poster.sent == []  # type: ignore[attr-defined]


async def test_a_5xx_goes_to_the_first_tier_then_the_next_then_dead() -> None:
    d = _deliverer([Answer(500, b"oops"), Answer(None, error="timeout after 10s"), Answer(503)])
    assert await d.deliver(_record(_event())) == "retried"
    topic, key, value, headers = d.recorder.written[-1]  # type: ignore[attr-defined]
    assert (topic, key, value) == (TIERS[0], b"a1", _event())
    state = retry_state(headers)
    assert (state.attempts, state.due_ms, state.first_attempt_ms, state.last_status) == (
        1, NOW_MS + 5000, NOW_MS, 500,
    )  # fmt: skip
    assert await d.deliver(_record(value, TIERS[0], headers=headers)) == "retried"
    topic, _, _, headers = d.recorder.written[-1]  # type: ignore[attr-defined]
    assert topic == TIERS[1]
    assert retry_state(headers).attempts == 2
    assert retry_state(headers).last_error == "timeout after 10s"
    assert await d.deliver(_record(value, TIERS[1], headers=headers)) == "dead"
    topic, key, value, _ = d.recorder.written[-1]  # type: ignore[attr-defined]
    letter = parse_dead_letter(value)
    assert (topic, key) == ("p.deliver.dlq", b"a1")
    assert letter["reason"] == "exhausted" and letter["attempts"] == 3
    assert letter["last_status"] == 503 and letter["event"].encode() == _event()
    assert [_count(d, o) for o in ("delivered", "retried", "dead")] == [0, 2, 1]


async def test_retry_after_pushes_the_due_time() -> None:
    d = _deliverer([Answer(429, retry_after="30")])
    assert await d.deliver(_record(_event())) == "retried"
    assert retry_state(d.recorder.written[-1][3]).due_ms == NOW_MS + 30_000  # type: ignore[attr-defined]


async def test_a_410_is_dead_at_once_with_its_body() -> None:
    d = _deliverer([Answer(410, b"endpoint retired")])
    assert await d.deliver(_record(_event())) == "dead"
    letter = parse_dead_letter(d.recorder.written[-1][2])  # type: ignore[attr-defined]
    assert letter["reason"] == "rejected"
    assert (letter["attempts"], letter["last_status"], letter["body_excerpt"]) == (
        1, 410, "endpoint retired",
    )  # fmt: skip
    assert letter["error"] == "HTTP 410"


async def test_a_value_that_is_not_an_event_is_dead_lettered_unsent() -> None:
    d = _deliverer([])
    assert await d.deliver(_record(b"not json")) == "dead"
    letter = parse_dead_letter(d.recorder.written[-1][2])  # type: ignore[attr-defined]
    assert letter["reason"] == "invalid" and letter["event"] == "not json"
    assert d.poster.sent == []  # type: ignore[attr-defined]


# --- batches ---------------------------------------------------------------------------------


def _rec(partition: int, offset: int, key: bytes) -> Inbound:
    return Inbound("t", partition, offset, key, b"{}")


async def test_a_batch_keeps_each_accounts_order_and_runs_accounts_concurrently() -> None:
    order: list[tuple[bytes | None, int]] = []
    gate = asyncio.Event()

    async def deliver(record: Inbound) -> Outcome:
        if record.key == b"slow" and record.offset == 0:
            await gate.wait()  # the other account goes on meanwhile
        order.append((record.key, record.offset))
        if record.key == b"fast" and record.offset == 3:
            gate.set()
        return "delivered"

    records = [_rec(0, 0, b"slow"), _rec(0, 1, b"fast"), _rec(0, 2, b"slow"), _rec(0, 3, b"fast")]
    batch = Batch(records, deliver, asyncio.Semaphore(4))
    await batch.run()
    assert order == [(b"fast", 1), (b"fast", 3), (b"slow", 0), (b"slow", 2)]
    assert batch.settle() == ({("t", 0): 4}, {})


async def test_only_finished_prefixes_are_committed() -> None:
    async def deliver(record: Inbound) -> Outcome:
        if record.offset == 5:
            raise RuntimeError("broker away")
        return "retried"

    records = [
        _rec(0, 4, b"a"),
        _rec(0, 5, b"b"),
        _rec(0, 6, b"a"),
        _rec(1, 9, b"b"),
        _rec(2, 1, b"c"),
    ]
    batch = Batch(records, deliver, asyncio.Semaphore(2))
    await batch.run()
    assert batch.failed == 1
    commit, rewind = batch.settle()
    # Partition 0: 4 done, 5 failed (6 done too, yet 5 holds the commit); partition 1: b's
    # chain stopped at 5, so 9 never ran; partition 2 is done.
    assert commit == {("t", 0): 5, ("t", 2): 2}
    assert rewind == {("t", 0): 5, ("t", 1): 9}


async def test_an_abandoned_batch_commits_what_finished() -> None:
    async def deliver(record: Inbound) -> Outcome:
        if record.offset == 2:
            await asyncio.sleep(3600)
        return "delivered"

    records = [_rec(0, 1, b"a"), _rec(0, 2, b"a"), _rec(0, 3, b"a")]
    batch = Batch(records, deliver, asyncio.Semaphore(2))
    task = asyncio.create_task(batch.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batch.settle() == ({("t", 0): 2}, {("t", 0): 2})


def test_an_accounts_chain_merges_its_topics_by_time_keeping_each_partitions_order() -> None:
    def rec(topic: str, offset: int, ts: int) -> Inbound:
        return Inbound(topic, 0, offset, b"a", b"{}", timestamp_ms=ts)

    records = [rec("hit", 0, 10), rec("hit", 1, 30), rec("near", 0, 20), rec("hit", 2, 25)]
    (chain,) = Batch(records, _never, asyncio.Semaphore(1)).chains()
    # hit@2 has an earlier timestamp than hit@1 but stays after it (its partition's order).
    assert [(r.topic, r.offset) for r in chain] == [("hit", 0), ("near", 0), ("hit", 1), ("hit", 2)]


async def _never(record: Inbound) -> Outcome:
    raise AssertionError("not delivered in this test")


class FakeConsumer:
    def __init__(self, assigned: set[Any]) -> None:
        self.assigned = assigned
        self.commits: list[dict[Any, int]] = []
        self.seeks: list[tuple[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets)

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[Any]:
        return self.assigned


async def test_a_fetch_that_outlives_its_deadline_commits_what_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from aiokafka import TopicPartition

    from commands.deliver import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "BATCH_DEADLINE_S", 0.2)

    async def deliver(record: Inbound) -> Outcome:
        if record.offset >= 2:
            await asyncio.sleep(3600)  # a hanging endpoint
        return "retried"

    tp = TopicPartition("t", 0)
    fake = FakeConsumer({tp})
    deliverer: Any = SimpleNamespace(deliver=deliver, endpoint=SimpleNamespace(name="x"))
    loop = consumer_module.EndpointLoop(
        deliverer,
        fake,  # type: ignore[arg-type]
        ["t"],
        concurrency=4,
        batch_size=10,
        stop=asyncio.Event(),
        grace_s=5,
        now_ms=lambda: NOW_MS,
    )
    await loop._deliver([_rec(0, 0, b"a"), _rec(0, 1, b"a"), _rec(0, 2, b"a"), _rec(0, 3, b"a")])
    assert fake.commits == [{tp: 2}]
    assert fake.seeks == [(tp, 2)]


@pytest.mark.parametrize("retry_after", ["\u00b2", "9" * 400, "9" * 5000])
async def test_a_garbage_retry_after_is_still_retried(retry_after: str) -> None:
    """Review: the answer's Retry-After raised out of deliver (the outcome never recorded, so
    the same event was POSTed again on every pass)."""
    d = _deliverer([Answer(429, retry_after=retry_after)])
    assert await d.deliver(_record(_event())) == "retried"
    due = retry_state(d.recorder.written[-1][3]).due_ms  # type: ignore[attr-defined]
    assert NOW_MS + 5000 <= due <= NOW_MS + 6 * 3600 * 1000


class _TierConsumer:
    def __init__(self) -> None:
        self.paused: list[Any] = []

    def seek(self, tp: Any, offset: int) -> None:
        pass

    def pause(self, tp: Any) -> None:
        self.paused.append(tp)


async def test_a_long_retry_after_does_not_hold_other_accounts_retries_in_its_tier() -> None:
    from types import SimpleNamespace

    from aiokafka import TopicPartition

    from commands.deliver.consumer import EndpointLoop

    # Review: account a1's endpoint answers 429 Retry-After: 3600, then a2's event gets a 500.
    # Both were written to the 5 s tier, a1's due in an hour first: a2's retry, due in 5 s,
    # waited behind it. a1's now goes to the tier covering its wait (the last, 1 min here).
    d = _deliverer([Answer(429, retry_after="3600"), Answer(500), Answer(429, retry_after="3")])
    assert await d.deliver(Inbound("p.threshold-hit", 0, 0, b"a1", _event("a1"))) == "retried"
    assert await d.deliver(Inbound("p.threshold-hit", 0, 1, b"a2", _event("a2"))) == "retried"
    assert await d.deliver(Inbound("p.threshold-hit", 0, 2, b"a3", _event("a3"))) == "retried"
    written = d.recorder.written  # type: ignore[attr-defined]
    assert [w[0] for w in written] == [TIERS[1], TIERS[0], TIERS[0]]
    # The 5 s tier's partition holds a2's and a3's retries only: both due 6 s later.
    tp = TopicPartition(TIERS[0], 0)
    messages = [
        SimpleNamespace(offset=i, key=key, value=value, headers=headers, timestamp=NOW_MS)
        for i, (_, key, value, headers) in enumerate(w for w in written if w[0] == TIERS[0])
    ]
    fake = _TierConsumer()
    loop = EndpointLoop(
        d,
        fake,  # type: ignore[arg-type]
        ["p.threshold-hit"],
        concurrency=4,
        batch_size=10,
        stop=asyncio.Event(),
        grace_s=5,
        now_ms=lambda: NOW_MS + 6000,  # a2's and a3's retries are due, a1's not for an hour
    )
    due = loop._due({tp: messages})  # type: ignore[dict-item]
    assert [r.key for r in due] == [b"a2", b"a3"]


@pytest.mark.parametrize("event_id", ["a\r\nx-evil: 1", "a\x00b", "del\x7f"])
async def test_an_event_id_that_cannot_be_a_header_is_dead_lettered_unsent(event_id: str) -> None:
    """Review: an event_id with a control character cannot be sent as ``webhook-id``: aiohttp
    raised ValueError (header injection) out of HttpPoster.post, the outcome was never
    recorded, and the event (with its partition's later records) was read and tried again
    every second, forever. It is an invalid event: dead-lettered, never POSTed."""
    from aiohttp import ClientSession, web

    from commands.deliver.http import HttpPoster

    posted: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        posted.append(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/x", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    value = orjson.dumps({"event_id": event_id, "kind": "threshold-hit", "account_id": "a1"})
    d = _deliverer([], url=f"http://127.0.0.1:{port}/x")
    try:
        async with ClientSession() as session:
            d.poster = HttpPoster(session)  # the real poster, to a real receiver on loopback
            assert await d.deliver(_record(value)) == "dead"
    finally:
        await runner.cleanup()
    assert posted == []
    letter = parse_dead_letter(d.recorder.written[-1][2])  # type: ignore[attr-defined]
    assert letter["reason"] == "invalid" and letter["event"].encode() == value


def test_an_http_error_never_quotes_the_endpoints_path_or_query() -> None:
    url = "http://user:pw@127.0.0.1:1/hooks/T0K3N?key=s3cr3t%20x"

    async def attempt(target: str) -> Answer:
        async with new_session() as session:
            return await HttpPoster(session).post(target, b"{}", {}, 5.0)

    # aiohttp quotes the URL in full in an InvalidUrlClientError (yarl refuses the port).
    refused = asyncio.run(attempt("http://127.0.0.1:99999/hooks/T0K3N?key=s3cr3t"))
    assert refused.status is None and refused.error.startswith("InvalidUrlClientError")
    assert "T0K3N" not in refused.error and "s3cr3t" not in refused.error
    # Both the form given and the form yarl normalised it to are replaced.
    text = f"ClientError: {url} and http://user:pw@127.0.0.1:1/hooks/T0K3N?key=s3cr3t+x"
    scrubbed = without_url(text.replace("s3cr3t+x", "s3cr3t%20x"), url)
    assert "T0K3N" not in scrubbed and "pw" not in scrubbed
    assert scrubbed.count("http://127.0.0.1:1/...") == 2
