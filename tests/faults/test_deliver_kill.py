"""``moments deliver`` SIGKILLed under load, twice, and restarted: every event still reaches
every endpoint that wants it (at least once), and the duplicates are counted and printed.

The bound on duplicates comes from how the deliverer commits (commands/deliver/consumer.py):
each endpoint's loop fetches at most ``MOMENTS_DELIVER_BATCH_SIZE`` records
(``getmany(max_records=batch_size)``), delivers them (``MOMENTS_DELIVER_CONCURRENCY``
requests at a time, which only orders the work inside the batch), awaits the commit of the
finished prefix of every partition, and only then fetches again. So at any instant the records
an endpoint was sent but its group has not committed are those of ONE batch; a SIGKILL makes
the restarted deliverer send those again, nothing else: at most ``batch_size`` duplicates per
endpoint per kill (the scripted receiver never fails, so no record goes through a retry tier).

The events are the guide's examples (``tests/integration/test_delivery.py``'s
``event_like``, built by the domain's builders), several kinds over several accounts, keyed by
account like the worker writes them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from state import jsonbytes
from tests.harness.receiver import HANG
from tests.integration import test_delivery
from tests.integration.conftest import BOOTSTRAP, eventually
from tests.integration.test_delivery import Delivery, event_like

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: The delivery tests' fixture (deliverer, receiver and topics of one test), registered here.
delivery = test_delivery.delivery

KINDS = (
    "threshold-near",
    "threshold-hit",
    "milestone",
    "sudden-drop",
    "birthday",
    "account-change",
)
THRESHOLDS = ("threshold-near", "threshold-hit")
BATCH = 100
CONCURRENCY = 16
PARTITIONS = 2  # MOMENTS_PARTITIONS of the Delivery fixture


def load(count: int, accounts: int) -> list[dict[str, Any]]:
    """``count`` events cycling over ``KINDS`` and ``accounts`` accounts."""
    return [
        event_like(KINDS[i % len(KINDS)], f"acct-{(i * 7) % accounts:03d}", i) for i in range(count)
    ]


async def publish_fast(
    producer: AIOKafkaProducer, prefix: str, events: Sequence[dict[str, Any]]
) -> None:
    """Every event to its kind's topic, keyed by account, without waiting for each ack."""
    pending = [
        await producer.send(
            f"{prefix}.{e['kind']}", jsonbytes.dumps(e), key=e["account_id"].encode()
        )
        for e in events
    ]
    await asyncio.gather(*pending)


async def committed(group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


async def warm_up(setup: Delivery, producer: AIOKafkaProducer) -> set[str]:
    """One event on every partition of every kind's topic, delivered and COMMITTED by every
    endpoint's group, before the load.

    A group's first assignment of a partition without a committed offset starts at its end
    and commits that position at once (commands/deliver/consumer.py, ``_Listener``; see
    ``test_a_kill_before_the_first_commit_loses_nothing``). The warm-up makes sure every
    group has joined before the load, so the events of the load are all the endpoints'."""
    events = []
    for n, kind in enumerate(KINDS):
        for partition in range(PARTITIONS):
            event = event_like(kind, "acct-warm", 900_000 + n * PARTITIONS + partition)
            await producer.send_and_wait(
                f"{setup.prefix}.{kind}",
                jsonbytes.dumps(event),
                key=b"acct-warm",
                partition=partition,
            )
            events.append(event)
    ids = {e["event_id"] for e in events}

    async def delivered_and_committed() -> bool:
        for name, kinds in (("all", KINDS), ("thresholds", THRESHOLDS)):
            want = {e["event_id"] for e in events if e["kind"] in kinds}
            if not want <= set(setup.receiver.ids(f"/{name}")):
                return False
            offsets = await committed(f"{setup.app_id}-deliver-{name}")
            topics = {f"{setup.prefix}.{k}" for k in kinds}
            if not all(offsets.get((t, p), 0) >= 1 for t in topics for p in range(PARTITIONS)):
                return False
        return True

    await eventually(delivered_and_committed, timeout=60)
    return ids


async def test_a_deliverer_killed_twice_under_load_delivers_everything(delivery: Delivery) -> None:
    setup = delivery
    setup.endpoint("all", list(KINDS))
    setup.endpoint("thresholds", list(THRESHOLDS))
    receiver = setup.receiver
    receiver.delay_s = 0.005  # each answer takes a moment: the kills land mid-batch
    extra = {
        "MOMENTS_DELIVER_BATCH_SIZE": str(BATCH),
        "MOMENTS_DELIVER_CONCURRENCY": str(CONCURRENCY),
    }
    process = await setup.start(**extra)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    await producer.start()
    try:
        warm = await warm_up(setup, producer)
        events = load(3_000, accounts=40)
        await publish_fast(producer, setup.prefix, events)
    finally:
        await producer.stop()
    want = {
        "/all": {e["event_id"] for e in events},
        "/thresholds": {e["event_id"] for e in events if e["kind"] in THRESHOLDS},
    }

    def arrived(path: str) -> list[str]:
        return [i for i in receiver.ids(path) if i not in warm]

    at_kill = []
    for share in (0.25, 0.6):

        async def some_delivered(share: float = share) -> bool:
            return len(arrived("/all")) >= share * len(want["/all"])

        await eventually(some_delivered, timeout=120, interval=0.02)
        process.kill()
        at_kill.append({path: len(arrived(path)) for path in want})
        process = await setup.start(**extra)

    async def everything_delivered() -> bool:
        return all(set(arrived(path)) >= ids for path, ids in want.items())

    await eventually(everything_delivered, timeout=180)
    kills = len(at_kill)
    bound = kills * BATCH
    lines = []
    for path, ids in want.items():
        got = arrived(path)
        repeats = Counter(got) - Counter(set(got))
        duplicates = sum(repeats.values())
        kill_counts = ", ".join(str(k[path]) for k in at_kill)
        lines.append(
            f"endpoint {path}: {len(ids)} events, {len(got)} deliveries, {duplicates} duplicate(s)"
            f" ({len(repeats)} events sent more than once); deliveries seen at the kills:"
            f" {kill_counts}; bound {kills} kills x batch {BATCH} = {bound}"
        )
        assert set(got) == ids, path
        assert all(r.verified for r in receiver.at(path)), f"{path}: a signature did not verify"
        assert duplicates <= bound, lines[-1]
    print("\n".join(["deliverer SIGKILLed twice under load and restarted:", *lines]))


async def test_a_kill_before_the_first_commit_loses_nothing(delivery: Delivery) -> None:
    setup = delivery
    path = setup.endpoint("first", ["milestone"], timeout_s=30)
    receiver = setup.receiver
    receiver.script(path, HANG)  # the first request never answers: no batch completes
    process = await setup.start()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    topic = f"{setup.prefix}.milestone"
    try:
        early = [event_like("milestone", "acct-early", i) for i in range(5)]
        for event in early:
            await producer.send_and_wait(
                topic, jsonbytes.dumps(event), key=b"acct-early", partition=0
            )

        async def first_request_hangs() -> bool:
            return len(receiver.ids(path, answered=None)) >= 1

        await eventually(first_request_hangs)
        process.kill()  # nothing committed yet on partition 0
        await setup.start()
        sentinel = event_like("milestone", "acct-early", 99)
        await producer.send_and_wait(
            topic, jsonbytes.dumps(sentinel), key=b"acct-early", partition=0
        )
    finally:
        await producer.stop()

    async def sentinel_delivered() -> bool:
        return sentinel["event_id"] in receiver.ids(path)

    await eventually(sentinel_delivered, timeout=60)
    # One account's chain, in order: everything before the sentinel came first (no timing).
    assert {e["event_id"] for e in early} <= set(receiver.ids(path))
