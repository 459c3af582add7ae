"""Meters end to end (contract 1.4): gauges, peaks, distinct counts and CloudEvents on the
real broker, through real workers reading a catalog of their own (``MOMENTS_PLANS_FILE``).

One stack and one worker serve the whole module (each case has its own accounts); the last
case stops that worker, restarts it on the same data directory, then starts one from an empty
directory (state rebuilt from the changelogs, the distinct table included), and checks that
every event counts exactly once across both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from tests.integration.conftest import Stack, Worker, eventually, show_logs_if_failed, total_of
from tests.schema import assert_valid

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

#: The catalog of these tests: its numbers are theirs, not the shipped catalog's.
CATALOG = """
locale = "en_US"

[defaults]
period = "month"
currency = "USD"
near_levels = [0.8]
over_levels = [2.0]

[metrics]
api_calls = "API calls"
tokens = "tokens"
seats = { unit = "seats", aggregation = "latest" }
storage_gb = { unit = "GB of storage", aggregation = "max" }
active_users = { unit = "active users", aggregation = "unique_count", unique = "user_id" }

[[plans]]
id = "team"
name = "Team"
rank = 1
price = 10.0
pausable = true
limits = { seats = 3, storage_gb = 10, active_users = 3 }

[[plans]]
id = "big"
name = "Big"
rank = 2
price = 100.0
pausable = true
limits = { seats = 30, storage_gb = 100, active_users = 30 }

# One event feeds two meters: a request counts a call and its user; a completion counts its
# tokens and a call.
[[meters]]
event_type = "api-request"
metric = "api_calls"

[[meters]]
event_type = "api-request"
metric = "active_users"

[[meters]]
event_type = "llm-completion"
metric = "tokens"
value = "tokens"

[[meters]]
event_type = "llm-completion"
metric = "api_calls"
"""


@dataclass
class Meters:
    """The module's stack, its catalog file and the worker now running."""

    stack: Stack
    plans_file: Path
    worker: Worker

    def start(self, name: str, data_dir: Path) -> Worker:
        return self.stack.worker(
            name, data_dir=data_dir, MOMENTS_PLANS_FILE=str(self.plans_file)
        ).start()

    async def plan(self, account: str, plan_id: str = "team") -> None:
        await self.stack.plan(account, plan_id)

        async def known() -> bool:
            view = await self.stack.account(self.worker, account)
            return bool(view and view["plan"])

        await eventually(known)

    async def reading(
        self, account: str, record_id: str, metric: str, quantity: float, ts: int | None = None
    ) -> None:
        await self.stack.usage(account, record_id, quantity, metric=metric, timestamp=ts)

    async def user(self, account: str, record_id: str, user_id: str) -> None:
        """A plain record of ``active_users``: no quantity, its distinct value ``user_id``."""
        record = {
            "record_id": record_id,
            "account_id": account,
            "metric": "active_users",
            "timestamp": int(time.time() * 1000),
            "user_id": user_id,
        }
        await self.stack.send(self.stack.usage_topic, account, record)

    async def structured(
        self,
        account: str,
        event_id: str,
        event_type: str,
        data: dict[str, Any],
        source: str = "/api",
    ) -> None:
        """A CloudEvent in structured mode: the whole event is the record's JSON value."""
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": event_type,
            "subject": account,
            "time": _rfc3339(int(time.time() * 1000)),
            "data": data,
        }
        await self.stack.send(self.stack.usage_topic, account, event)

    async def binary(
        self,
        account: str,
        event_id: str,
        event_type: str,
        data: dict[str, Any],
        source: str = "/api",
    ) -> None:
        """A CloudEvent in binary mode: attributes in ``ce_*`` headers, data as the value."""
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", source.encode()),
            ("ce_type", event_type.encode()),
            ("ce_subject", account.encode()),
            ("ce_time", _rfc3339(int(time.time() * 1000)).encode()),
            ("content-type", b"application/json"),
        ]
        producer = await self.stack.producer()
        await producer.send_and_wait(
            self.stack.usage_topic, orjson.dumps(data), key=account.encode(), headers=headers
        )

    async def totals_become(self, account: str, want: Mapping[str, float]) -> None:
        """Wait until the account's current-period values are ``want`` (metric -> value)."""
        last: list[Any] = []

        async def equal() -> bool:
            view = await self.stack.account(self.worker, account)
            got = {metric: total_of(view, metric) for metric in want}
            last[:] = [got]
            return got == want

        try:
            await eventually(equal)
        except AssertionError:
            raise AssertionError(f"{account}: {last} is not {want}") from None

    async def dead_letters(self, account: str, count: int) -> list[dict[str, Any]]:
        """The first ``count`` dead letters of records keyed by ``account``, in order."""
        topic = f"{self.stack.usage_topic}.dlq"
        out: list[dict[str, Any]] = []

        async def arrived() -> bool:
            messages = await self.stack.read_all(topic, settle_s=0.5)
            out[:] = [orjson.loads(m.value) for m in messages if m.key == account.encode()]
            return len(out) >= count

        await eventually(arrived)
        return out[:count]

    async def events(self, account: str, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
        """Every committed threshold event of ``account``, schema-checked, after a quiet wait."""
        out: list[dict[str, Any]] = []
        for kind in ("threshold-near", "threshold-hit"):
            for message in await self.stack.read_all(
                f"{self.stack.prefix}.{kind}", settle_s=settle_s
            ):
                event = orjson.loads(message.value)
                if event["account_id"] == account:
                    assert message.key == account.encode()
                    assert_valid(event)
                    out.append(event)
        return out


async def _today_is(meters: Meters, account: str, metric: str, want: float) -> None:
    """The account's value of ``metric`` today (UTC) in ``/accounts``, behind drops, is ``want``."""
    view = await meters.stack.account(meters.worker, account)
    assert view is not None
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert view["drops"]["recent_daily_totals"][metric][today] == want, view["drops"]


def _rfc3339(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, float, list[float]]]:
    return sorted((e["metric"], e["kind"], e["level"], e["crossed_levels"]) for e in events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def meters(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Meters]:
    """One stack and worker for the module: a worker start costs seconds, a case none."""
    tmp = tmp_path_factory.mktemp("meters")
    plans_file = tmp / "plans.toml"
    plans_file.write_text(CATALOG)
    stack = Stack(tmp)
    await stack.create_inputs()
    try:
        first = stack.worker("w1", MOMENTS_PLANS_FILE=str(plans_file)).start()
        yield Meters(stack, plans_file, await first.ready())
    finally:
        await stack.close()


@pytest.fixture(autouse=True)
def logs_on_failure(meters: Meters, request: pytest.FixtureRequest) -> Iterator[None]:
    """Every worker's log on stderr when a case failed (the stack outlives the case)."""
    yield
    show_logs_if_failed(meters.stack, request)


async def test_a_gauge_crosses_its_limit_once_in_a_period(meters: Meters) -> None:
    """Seats (``latest``, limit 3): 2, 3 (hit), 1, 3 again: the level is announced once."""
    await meters.plan("g-seats")
    await meters.reading("g-seats", "s0", "seats", 2)
    await meters.reading("g-seats", "s1", "seats", 3)  # 3 of 3: hit (0.8 and 1.0 at once)
    await meters.reading("g-seats", "s2", "seats", 1)  # falls back
    await meters.totals_become("g-seats", {"seats": 1})
    await meters.reading("g-seats", "s3", "seats", 3)  # back at the limit: not announced again
    # A reading older than the latest one changes nothing (it is still accepted).
    await meters.reading("g-seats", "s-old", "seats", 0, ts=int(time.time() * 1000) - 60_000)
    await meters.reading("g-seats", "b-last", "storage_gb", 1)  # marks the end of the records
    await meters.totals_become("g-seats", {"seats": 3, "storage_gb": 1})
    await _today_is(meters, "g-seats", "seats", 3)

    [hit] = await meters.events("g-seats")
    assert (hit["kind"], hit["metric"], hit["level"]) == ("threshold-hit", "seats", 1.0)
    assert hit["crossed_levels"] == [0.8, 1.0]
    assert hit["trigger_record_id"] == "s1"
    assert hit["usage"]["total"] == 3  # the level, not a sum of the readings (2 + 3)
    assert hit["projection"] is None  # a level has no pace


async def test_a_peak_crosses_a_storage_limit(meters: Meters) -> None:
    """Storage (``max``, limit 10): 4, 12 (hit), 5, 3: one event; the period shows 12."""
    await meters.plan("g-storage")
    for i, quantity in enumerate((4, 12, 5, 3)):
        await meters.reading("g-storage", f"b{i}", "storage_gb", quantity)
    await meters.reading("g-storage", "b-last", "seats", 1)  # marks the end of the records
    await meters.totals_become("g-storage", {"storage_gb": 12, "seats": 1})
    await _today_is(meters, "g-storage", "storage_gb", 12)

    [hit] = await meters.events("g-storage")
    assert (hit["kind"], hit["metric"], hit["level"]) == ("threshold-hit", "storage_gb", 1.0)
    assert hit["trigger_record_id"] == "b1"
    assert hit["usage"]["total"] == 12
    assert hit["projection"] is None


async def test_distinct_users_cross_a_limit(meters: Meters) -> None:
    """Active users (``unique_count``, limit 3): repeats do not count, the third user hits."""
    await meters.plan("g-users")
    for i, user in enumerate(("ana", "ana", "bo", "ana", "bo")):
        await meters.user("g-users", f"u{i}", user)
    await meters.totals_become("g-users", {"active_users": 2})
    await meters.user("g-users", "u5", "cy")  # the third distinct user: hit
    await meters.user("g-users", "u6", "bo")  # seen: nothing
    await meters.user("g-users", "u7", "ana")
    await meters.reading("g-users", "u8", "active_users", 1)  # no user_id: dead-lettered
    await meters.totals_become("g-users", {"active_users": 3})

    [letter] = await meters.dead_letters("g-users", 1)
    assert letter["error"].startswith("user_id: missing"), letter
    [hit] = await meters.events("g-users")
    assert (hit["kind"], hit["metric"], hit["level"]) == ("threshold-hit", "active_users", 1.0)
    assert hit["trigger_record_id"] == "u5"
    assert hit["usage"]["total"] == 3
    view = await meters.stack.account(meters.worker, "g-users")
    assert view is not None
    assert view["period_totals"]["active_users"][-1]["limit"] == 3


async def test_cloudevents_in_both_modes_feed_two_meters_each(meters: Meters) -> None:
    worker = meters.worker
    unmetered = await worker.metric("moments_records_total", outcome="unmetered")
    duplicates = await worker.metric("moments_records_total", outcome="duplicate")
    await meters.plan("ce-1", "big")
    await meters.structured("ce-1", "e1", "llm-completion", {"tokens": 120, "model": "m"})
    await meters.binary("ce-1", "e2", "llm-completion", {"tokens": 30})
    await meters.structured("ce-1", "e3", "api-request", {"user_id": "ana"})
    await meters.binary("ce-1", "e4", "api-request", {"user_id": "bo"})
    await meters.structured("ce-1", "e5", "page-view", {"path": "/"})  # no meter: unmetered
    # (source, id) seen: duplicates, whatever their data or mode says.
    await meters.binary("ce-1", "e1", "llm-completion", {"tokens": 999})
    await meters.structured("ce-1", "e4", "api-request", {"user_id": "cy"})
    # The same id from another source is another event.
    await meters.binary("ce-1", "e1", "llm-completion", {"tokens": 50}, source="/batch")

    # An event that cannot feed a meter that takes it feeds none: dead-lettered whole.
    await meters.binary("ce-1", "e6", "llm-completion", {"tokens": "x"})
    await meters.structured("ce-1", "e7", "api-request", {"path": "/"})  # no user_id

    await meters.totals_become("ce-1", {"api_calls": 5, "tokens": 200, "active_users": 2})
    bad_tokens, no_user = await meters.dead_letters("ce-1", 2)
    assert bad_tokens["error"].startswith('data.tokens: must be a finite number >= 0, got "x"')
    assert no_user["error"].startswith("data.user_id: missing"), no_user
    await worker.metric_becomes("moments_records_total", unmetered + 1, outcome="unmetered")
    await worker.metric_becomes("moments_records_total", duplicates + 2, outcome="duplicate")


async def _phase_one(meters: Meters) -> None:
    """Every kind of record of account ``r-1``, as sent before the restarts (and again)."""
    await meters.reading("r-1", "s0", "seats", 3)  # 3 of 3: hit
    await meters.reading("r-1", "b0", "storage_gb", 12)  # 12 of 10: hit
    await meters.user("r-1", "u0", "ana")
    await meters.user("r-1", "u1", "bo")
    await meters.structured("r-1", "e1", "llm-completion", {"tokens": 120})
    await meters.binary("r-1", "e2", "api-request", {"user_id": "bo"})


async def test_each_event_counts_once_across_restarts(meters: Meters) -> None:
    """SIGTERM and restart on the same data, then a start from an empty data directory: the
    records sent before are duplicates, the levels stay announced, and the distinct table comes
    back from its changelog (a user seen before does not count again)."""
    stack = meters.stack
    await meters.plan("r-1")
    await _phase_one(meters)
    before = {"seats": 3, "storage_gb": 12, "active_users": 2, "api_calls": 2, "tokens": 120}
    await meters.totals_become("r-1", before)
    assert meters.worker.stop() == 0  # SIGTERM: commits what it finished, exits 0

    meters.worker = await meters.start("w1b", stack.tmp / "w1").ready()
    await _phase_one(meters)  # every record again: duplicates
    await meters.reading("r-1", "s1", "seats", 1)  # falls back
    await meters.reading("r-1", "b1", "storage_gb", 4)
    await meters.totals_become("r-1", {**before, "seats": 1})
    await meters.worker.metric_becomes("moments_records_total", 6, outcome="duplicate")
    assert meters.worker.stop() == 0

    # An empty data directory: totals, announced levels and distinct values from changelogs.
    meters.worker = await meters.start("w2", stack.tmp / "empty").ready()
    await _phase_one(meters)  # again: duplicates, whatever the store held before
    await meters.user("r-1", "u2", "ana")  # ana was seen before the restarts: not counted
    await meters.structured("r-1", "e3", "api-request", {"user_id": "bo"})  # bo neither
    await meters.reading("r-1", "s2", "seats", 3)  # back at the limit: not announced again
    await meters.totals_become("r-1", {**before, "api_calls": 3})
    await meters.worker.metric_becomes("moments_records_total", 6, outcome="duplicate")
    await meters.user("r-1", "u3", "cy")  # the third distinct user: hit
    await meters.totals_become("r-1", {**before, "api_calls": 3, "active_users": 3})

    events = await meters.events("r-1")
    assert _summary(events) == [
        ("active_users", "threshold-hit", 1.0, [0.8, 1.0]),
        ("seats", "threshold-hit", 1.0, [0.8, 1.0]),
        ("storage_gb", "threshold-hit", 1.0, [0.8, 1.0]),
    ]
    assert {e["trigger_record_id"] for e in events} == {"s0", "b0", "u3"}
    assert len({e["event_id"] for e in events}) == 3
