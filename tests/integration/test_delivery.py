"""``moments deliver`` end to end: a real broker, a real deliverer process, and a scripted
aiohttp receiver on loopback that verifies every signature with ``standardwebhooks``.

The events are the guide's examples (docs/events.md, made by the domain's builders), encoded
as the worker encodes them, published to the event topics of the test's prefix.
"""

from __future__ import annotations

import base64
import importlib.util
import secrets
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook

from domain.delivery.records import parse_dead_letter
from domain.plans.catalog import load_catalog
from domain.wording.kinds import KINDS, event_kinds
from state import jsonbytes
from tests.harness.deliver import deliver_env, deliver_process, write_endpoints
from tests.harness.ports import free_port
from tests.harness.process import MOMENTS, WorkerProcess
from tests.harness.receiver import HANG, Reply, ScriptedReceiver
from tests.integration.conftest import BOOTSTRAP, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = "300ms,600ms"


def _examples() -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location(
        "gen_event_examples", ROOT / "scripts" / "gen-event-examples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The guide's rule example uses a catalog of its own: here its event is one of a rule of
    # the shipped catalog, whose topics the deliverer reads.
    rule = event_kinds(load_catalog(ROOT / "config" / "plans.toml"))[len(KINDS)]
    return [
        {**e, "kind": rule} if e["kind"].startswith("custom.") else e
        for e in module.examples().values()
    ]


EXAMPLES = _examples()


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def event_like(kind: str = "threshold-hit", account: str = "acct-1", n: int = 0) -> dict[str, Any]:
    """An example event of ``kind`` for ``account``, with an id of its own (``n``)."""
    base = next(e for e in EXAMPLES if e["kind"] == kind)
    return {**base, "account_id": account, "event_id": f"{uuid.uuid4().hex}{n:08d}"}


@dataclass
class Delivery:
    """One test's deliverer, receiver and topics."""

    tmp: Path
    receiver: ScriptedReceiver
    app_id: str = field(default_factory=lambda: f"dl-{uuid.uuid4().hex[:10]}")
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    process: WorkerProcess | None = None
    producer: AIOKafkaProducer | None = None
    _plain: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.app_id}.moments"

    def endpoint(self, name: str, kinds: list[str] | None = None, **fields: Any) -> str:
        """Add an endpoint at the receiver's ``/name``; returns the path."""
        secret = self.receiver_secret(name)
        var = f"IT_SECRET_{name.upper().replace('-', '_')}"
        self.secrets[var] = secret
        entry = {
            "name": name,
            "url": self.receiver.url(f"/{name}"),
            "kinds": kinds or ["*"],
            "secret_env": var,
            "timeout_s": 5,
        }
        entry.update(fields)
        self.endpoints.append(entry)
        return f"/{name}"

    def receiver_secret(self, name: str) -> str:
        path = f"/{name}"
        if path not in self.receiver.secrets:
            secret = _secret()
            self.receiver.secrets[path] = [Webhook(secret)]
            self._plain[path] = secret
        return self._plain[path]

    async def start(self, **extra: str) -> WorkerProcess:
        """Start the deliverer (again, after a kill: same environment and port)."""
        if self.process is None:
            env = deliver_env(
                bootstrap=BOOTSTRAP,
                app_id=self.app_id,
                endpoints_file=write_endpoints(self.tmp / "endpoints.toml", self.endpoints),
                port=free_port(),
                MOMENTS_DELIVER_SCHEDULE=SCHEDULE,
                MOMENTS_SHUTDOWN_TIMEOUT="6s",
                **self.secrets,
                **extra,
            )
            self.process = deliver_process(env, self.tmp / "deliver.log")
        self.process.start(append=True)
        try:
            await self.process.ready(time.monotonic() + 90, poll_s=0.2)
        except AssertionError as exc:
            raise AssertionError(f"deliverer {exc}:\n{self.log()}") from None
        return self.process

    def log(self) -> str:
        return self.process.log_text()[-8000:] if self.process else ""

    async def publish(self, *events: dict[str, Any]) -> list[bytes]:
        """Each event to its kind's topic, keyed by account, as the worker writes them."""
        if self.producer is None:
            self.producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
            await self.producer.start()
        values = []
        for event in events:
            value = jsonbytes.dumps(event)
            await self.producer.send_and_wait(
                f"{self.prefix}.{event['kind']}", value, key=event["account_id"].encode()
            )
            values.append(value)
        return values

    async def dead_letters(self) -> list[dict[str, Any]]:
        from tests.harness import kafka

        consumer = await kafka.committed_reader(f"{self.prefix}.deliver.dlq", BOOTSTRAP)
        out: list[dict[str, Any]] = []
        try:
            while fetched := await consumer.getmany(timeout_ms=1000):
                for messages in fetched.values():
                    out += [dict(parse_dead_letter(m.value)) for m in messages]
        finally:
            await consumer.stop()
        return out

    async def metric(self, name: str, **labels: str) -> float:
        assert self.process is not None
        metrics = await self.process.metrics()
        assert metrics is not None, "/metrics did not answer"
        return metrics.value(name, **labels)

    def replay(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.process is not None
        return subprocess.run(
            [str(MOMENTS), "deliver", "--replay", *args],
            env=self.process.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
async def delivery(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Delivery]:
    receiver = await ScriptedReceiver({}).start()
    setup = Delivery(tmp_path, receiver)
    try:
        yield setup
        if setup.process is not None:
            # SIGTERM: the deliverer finishes or abandons what is in flight and exits 0.
            code, killed = setup.process.stop(30)
            assert (code, killed) == (0, False), setup.log()
    finally:
        if setup.process is not None:
            setup.process.kill()
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                print(setup.log())
        if setup.producer is not None:
            await setup.producer.stop()
        await receiver.stop()


def _verified(receiver: ScriptedReceiver, path: str) -> bool:
    return all(r.verified for r in receiver.at(path))


async def test_every_kind_reaches_the_endpoints_that_want_it(delivery: Delivery) -> None:
    everything = delivery.endpoint("all")
    hits = delivery.endpoint("hits", ["threshold-hit", "custom.*"], plans=["starter"])
    await delivery.start()
    events = [event_like(e["kind"], e["account_id"], i) for i, e in enumerate(EXAMPLES)]
    # One account's events in order: five more threshold-hits of acct-order.
    ordered = [event_like("threshold-hit", "acct-order", 100 + i) for i in range(5)]
    values = await delivery.publish(*events, *ordered)
    receiver = delivery.receiver
    want = {e["event_id"] for e in events + ordered}
    await eventually(lambda: _async(set(receiver.ids(everything)) == want))
    # Every request verified by standardwebhooks; bodies byte for byte what is on Kafka.
    assert _verified(receiver, everything)
    assert sorted(r.body for r in receiver.at(everything)) == sorted(values)
    assert len(receiver.ids(everything)) == len(want)  # no duplicate
    got = [r.event for r in receiver.at(everything)]
    assert {e["kind"] for e in got} == {e["kind"] for e in EXAMPLES}
    order = [r.webhook_id for r in receiver.at(everything) if r.event["account_id"] == "acct-order"]
    assert order == [e["event_id"] for e in ordered]
    expected_hits = {
        e["event_id"]
        for e in events + ordered
        if (e["kind"] == "threshold-hit" or e["kind"].startswith("custom."))
        and e["plan"]["id"] == "starter"
    }
    await eventually(lambda: _async(set(receiver.ids(hits)) == expected_hits))
    assert _verified(receiver, hits)
    assert all(r.headers["content-type"] == "application/json" for r in receiver.received)
    await eventually(lambda: _async_metric(delivery, "all", "delivered", len(want)), timeout=15)


async def _async(value: bool) -> bool:
    return value


async def _async_metric(delivery: Delivery, endpoint: str, outcome: str, want: float) -> bool:
    got = await delivery.metric("moments_deliveries_total", endpoint=endpoint, outcome=outcome)
    return got == want


async def test_500_then_200_and_429_with_retry_after(delivery: Delivery) -> None:
    flaky = delivery.endpoint("flaky")
    busy = delivery.endpoint("busy")
    receiver = delivery.receiver
    receiver.script(flaky, Reply(500, body=b"try later"))
    receiver.script(busy, Reply(429, {"Retry-After": "2"}))
    await delivery.start()
    (event,) = [event_like("milestone", "acct-r")]
    await delivery.publish(event)
    await eventually(lambda: _async(receiver.ids(flaky) == [event["event_id"]]))
    await eventually(lambda: _async(receiver.ids(busy) == [event["event_id"]]))
    for path in (flaky, busy):
        first, second = receiver.at(path)
        assert (first.answered, second.answered) == ((500 if path == flaky else 429), 200)
        assert first.webhook_id == second.webhook_id == event["event_id"]
        assert first.verified and second.verified
    # Retry-After: 2 is honoured: the second attempt never comes earlier (a lower bound only).
    first, second = receiver.at(busy)
    assert second.at - first.at >= 2.0 - 0.05
    for endpoint in ("flaky", "busy"):
        await eventually(lambda e=endpoint: _async_metric(delivery, e, "delivered", 1))
        assert (
            await delivery.metric("moments_deliveries_total", endpoint=endpoint, outcome="retried")
            == 1
        )
    assert await delivery.dead_letters() == []
    # Every series exists from the start (the tiers' backlog too, drained by now).
    for tier in ("300ms", "600ms"):
        backlog = await delivery.metric(
            "moments_delivery_retry_backlog", endpoint="busy", tier=tier
        )
        assert backlog in (0, 1)  # measured every 5 s: it may still show the 429's wait
    attempts = await delivery.metric(
        "moments_delivery_attempts_total", endpoint="busy", result="4xx"
    )
    assert attempts == 1


async def test_retries_exhausted_go_to_the_dead_letter_topic(delivery: Delivery) -> None:
    down = delivery.endpoint("down")
    delivery.receiver.script(down, 503, 503, Reply(503, body=b"still down"))
    await delivery.start()
    (event,) = [event_like("birthday", "acct-x")]
    await delivery.publish(event)
    letters = await eventually(delivery.dead_letters)
    (letter,) = letters
    assert letter["endpoint"] == "down" and letter["event_id"] == event["event_id"]
    assert (letter["reason"], letter["attempts"], letter["last_status"]) == ("exhausted", 3, 503)
    assert letter["body_excerpt"] == "still down"
    assert orjson.loads(letter["event"]) == event
    assert len(delivery.receiver.at(down)) == 3


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(delivery: Delivery) -> None:
    stuck = delivery.endpoint("stuck", timeout_s=5)
    healthy = delivery.endpoint("healthy")
    receiver = delivery.receiver
    receiver.script(stuck, *[HANG] * 40)
    await delivery.start()
    events = [event_like("threshold-near", f"acct-{i}", i) for i in range(20)]
    sent_at = time.time()
    await delivery.publish(*events)
    await eventually(lambda: _async(len(receiver.ids(healthy)) == len(events)))
    latencies = [r.at - sent_at for r in receiver.at(healthy)]
    print(
        f"healthy endpoint beside a hanging one: {len(latencies)} deliveries, latency from "
        f"publish median {statistics.median(latencies):.3f}s, max {max(latencies):.3f}s"
    )
    # Ordering, not timing: every healthy delivery arrived while the hanging endpoint's first
    # attempts were still waiting for an answer (they end at their 5 s timeout).
    first_stuck = min(r.at for r in receiver.at(stuck))
    assert max(r.at for r in receiver.at(healthy)) < first_stuck + 5
    # The hanging endpoint's deliveries go on to its retry tiers.
    await eventually(lambda: _retried_some(delivery), timeout=30)


async def _retried_some(delivery: Delivery) -> bool:
    return (
        await delivery.metric("moments_deliveries_total", endpoint="stuck", outcome="retried") > 0
    )


async def test_410_is_dead_lettered_at_once_then_replayed(delivery: Delivery) -> None:
    gone = delivery.endpoint("gone")
    other = delivery.endpoint("other")
    receiver = delivery.receiver
    receiver.script(gone, Reply(410, body=b"endpoint retired"), Reply(410))
    receiver.script(other, 410, 410)
    await delivery.start()
    first, second = (
        event_like("account-change", "acct-g", 1),
        event_like("sudden-drop", "acct-g", 2),
    )
    await delivery.publish(first, second)

    async def four_letters() -> list[dict[str, Any]] | None:
        letters = await delivery.dead_letters()
        return letters if len(letters) == 4 else None

    letters = await eventually(four_letters)
    mine = [x for x in letters if x["endpoint"] == "gone"]
    assert {x["event_id"] for x in mine} == {first["event_id"], second["event_id"]}
    by_id = {x["event_id"]: x for x in mine}
    assert by_id[first["event_id"]]["body_excerpt"] == "endpoint retired"
    assert all(
        (x["reason"], x["attempts"], x["last_status"]) == ("rejected", 1, 410) for x in letters
    )
    # The endpoint is back: replay one event of it, then all of it; `other` stays dead.
    done = delivery.replay("--endpoint", "gone", "--event-id", first["event_id"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 dead-lettered deliveries replayed" in done.stdout
    await eventually(lambda: _async(receiver.ids(gone) == [first["event_id"]]))
    # The endpoint's replay sends only what the first replay did not.
    done = delivery.replay("--endpoint", "gone")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 dead-lettered deliveries replayed" in done.stdout
    await eventually(
        lambda: _async(
            sorted(receiver.ids(gone)) == sorted([first["event_id"], second["event_id"]])
        )
    )
    nothing_left = delivery.replay("--endpoint", "gone")
    assert nothing_left.returncode == 1, nothing_left.stdout
    # Asked for by id, an event replayed before is sent again.
    again = delivery.replay("--event-id", second["event_id"], "--endpoint", "gone")
    assert "1 dead-lettered deliveries replayed" in again.stdout
    await eventually(lambda: _async(receiver.ids(gone).count(second["event_id"]) == 2))
    assert _verified(receiver, gone)
    assert receiver.ids(other) == []
    nothing = delivery.replay("--event-id", "no-such-event")
    assert nothing.returncode == 1


async def test_a_deliverer_killed_under_load_resends_at_most_its_batch(delivery: Delivery) -> None:
    """SIGKILL while delivering, restart: every event arrives; the duplicates (counted and
    printed) are at most the records of the batch in flight, which was not committed."""
    steady = delivery.endpoint("steady")
    receiver = delivery.receiver
    receiver.delay_s = 0.02  # each answer takes a moment: the kill lands mid-batch
    batch = 50
    await delivery.start(MOMENTS_DELIVER_BATCH_SIZE=str(batch), MOMENTS_DELIVER_CONCURRENCY="8")
    events = [event_like("milestone", f"acct-{i % 40}", i) for i in range(600)]
    await delivery.publish(*events)
    await eventually(lambda: _async(len(receiver.ids(steady)) >= 150), interval=0.05)
    assert delivery.process is not None
    delivery.process.kill()
    at_kill = len(receiver.ids(steady))
    await delivery.start()
    want = {e["event_id"] for e in events}
    await eventually(lambda: _async(set(receiver.ids(steady)) == want), timeout=90)
    ids = receiver.ids(steady)
    duplicates = len(ids) - len(set(ids))
    print(
        f"deliverer SIGKILLed after {at_kill} of {len(events)} deliveries and restarted: "
        f"every event delivered, {duplicates} duplicate(s) (batch size {batch})"
    )
    assert _verified(receiver, steady)
    assert duplicates <= batch


async def test_during_a_rotation_both_secrets_verify_and_neither_is_logged(
    delivery: Delivery,
) -> None:
    old, new = _secret(), _secret()
    path = "/rotating"
    receiver = delivery.receiver
    receiver.secrets[path] = [Webhook(old)]  # a receiver that has not got the new one yet
    delivery.secrets.update(IT_ROTATING_NEW=new, IT_ROTATING_OLD=old)
    delivery.endpoints.append(
        {
            "name": "rotating",
            "url": receiver.url(path),
            "kinds": ["*"],
            "secret_env": "IT_ROTATING_NEW",
            "previous_secret_env": "IT_ROTATING_OLD",
        }
    )
    await delivery.start()
    (event,) = [event_like("milestone", "acct-rot")]
    await delivery.publish(event)
    await eventually(lambda: _async(receiver.ids(path) == [event["event_id"]]))
    (got,) = receiver.at(path)
    assert got.verified
    Webhook(new).verify(got.body, dict(got.headers))
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    log = delivery.log()
    for secret in (old, new):
        assert secret.removeprefix("whsec_") not in log


@pytest.mark.xfail(
    strict=True,
    reason="review: one account's events of several kinds are in several topics; the order "
    "is kept within a fetch only (chains merged by Kafka timestamp), and a fetch of at most "
    "MOMENTS_DELIVER_BATCH_SIZE records can hold a backlog's later events of one kind before "
    "the account's earlier ones of another kind: order holds per kind (per topic), not across "
    "kinds through a backlog (README, 'Order and isolation', says so)",
)
async def test_an_accounts_events_of_two_kinds_keep_their_order_through_a_backlog(
    delivery: Delivery,
) -> None:
    ordered = delivery.endpoint("ordered")
    await delivery.start(MOMENTS_DELIVER_BATCH_SIZE="20")
    assert delivery.process is not None
    code, killed = delivery.process.stop(30)  # the group exists; a backlog builds meanwhile
    assert (code, killed) == (0, False), delivery.log()
    kinds = ("milestone", "threshold-hit")
    events = [event_like(kinds[i % 2], "acct-o", i) for i in range(200)]
    await delivery.publish(*events)
    await delivery.start()
    want = [e["event_id"] for e in events]
    receiver = delivery.receiver
    await eventually(lambda: _async(set(receiver.ids(ordered)) == set(want)), timeout=90)
    assert receiver.ids(ordered) == want
