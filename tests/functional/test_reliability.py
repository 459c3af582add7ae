"""Defects of issue #8, each driven through the real handlers against a real RocksDB store.

No broker: records are built here; a step's outputs (state writes, queued messages) are
checked, then applied as the engine would after its commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.anniversaries import AnniversaryEvaluation
from agents.drops import DropEvaluation
from agents.plans import PlansHandler
from agents.usage import UsageHandler
from app.main import Runtime
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.rules.anniversaries import due_cut
from engine.step import Step
from state.store import PartitionStore
from state.transaction import StepState
from tables.accounts import plan_of
from tables.anniversary_passes import Pass, put_pass
from tables.announced import announced_of
from tables.daily import DAILY, daily_of
from tables.evaluations import Evaluation, put_evaluation
from tables.totals import totals_of
from tests.cloudevents_oracle import event_payloads
from tests.harness.steps import Record, commit, open_store, runtime_of

#: A slice time budget no test machine reaches: these tests are about what one slice does.
UNBOUNDED = float("inf")


class Harness:
    """A runtime, one partition's store, and steps run and applied as the engine does."""

    def __init__(self, tmp_path: Path, now_ms: int) -> None:
        self.runtime: Runtime = runtime_of(tmp_path, 1)
        self.settings = self.runtime.settings
        self.store: PartitionStore = open_store(tmp_path, 0)
        self.now_ms = now_ms
        self.offset = 0
        self.usage_handler = UsageHandler(self.runtime)
        self.plans_handler = PlansHandler(self.runtime)

    def _record(
        self, key: bytes | None, value: Any, timestamp: int | None = None, topic: str = ""
    ) -> Record:
        self.offset += 1
        raw = (
            None
            if value is None
            else orjson.dumps(value)
            if not isinstance(value, bytes)
            else value
        )
        at = self.now_ms if timestamp is None else timestamp
        return Record(key, raw, self.offset, at, topic or self.settings.topic_usage)

    def _run(self, handler: Any, topic: str, records: Sequence[Record]) -> Step:
        step = Step(0, StepState(self.store), self.now_ms)
        handler.process(step, topic, records)
        commit(self.store, step)
        return step

    def plan(self, key: bytes | None, value: Any, timestamp: int | None = None) -> Step:
        record = self._record(key, value, timestamp, self.settings.topic_accounts)
        return self._run(self.plans_handler, self.settings.topic_accounts, [record])

    def usage(self, *values: dict[str, Any]) -> Step:
        records = [self._record(v["account_id"].encode(), v) for v in values]
        return self._run(self.usage_handler, self.settings.topic_usage, records)

    def events(self, step: Step, kind: str) -> list[dict[str, Any]]:
        """The events of ``kind`` the step queued, each checked as a binary-mode CloudEvent."""
        sent = step.messages.get((self.settings.event_topic(kind), 0), [])
        return event_payloads(sent, self.settings.event_source)

    def dead_letters(self, step: Step, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(m[1]) for m in step.messages.get((topic, 0), [])]

    def counter(self, name: str, **labels: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
_ids = iter(range(10**9))


def usage(
    account: str, quantity: Any, at_ms: int = NOW_MS, metric: str = "api_calls"
) -> dict[str, Any]:
    return {
        "record_id": f"r{next(_ids)}",
        "account_id": account,
        "metric": metric,
        "quantity": quantity,
        "timestamp": at_ms,
    }


def plan(
    account: str, plan_id: str = "starter", updated: str = "2026-11-01T00:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {"account_id": account, "plan_id": plan_id, "updated_at": updated, **extra}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


# 1. Huge numbers: exact in events, and dead-lettered where they cannot be.
def test_a_huge_quantity_makes_a_valid_event_and_a_total_past_exact_is_dead_lettered(
    h: Harness,
) -> None:
    h.plan(b"a", plan("a"))
    step = h.usage(usage("a", 1e20))
    [hit] = h.events(step, "threshold-hit")  # orjson wrote it: no crash loop
    assert hit["usage"]["total"] == 1e20
    assert Decimal(orjson.dumps(hit["usage"]["total"]).decode()) == Decimal("1e20")

    step = h.usage(usage("a", 5))  # 1e20 + 5: no double holds it, no event could carry it
    [letter] = h.dead_letters(step, h.settings.topic_usage_dlq)
    assert "cannot carry exactly" in letter["error"]
    [(_, total)] = totals_of(h.store, "a").periods["api_calls"].items()
    assert total == Decimal("1e20")
    assert h.counter("moments_records_total", outcome="invalid") == 1


def test_an_unlimited_sized_override_makes_valid_events(h: Harness) -> None:
    h.plan(b"a", plan("a", limits={"api_calls": 1e20}))
    step = h.usage(usage("a", 8e19))
    [near] = h.events(step, "threshold-near")
    assert near["usage"]["limit"] == 1e20


# 8. A plan record with no key.
def test_a_plan_record_without_a_key_is_dead_lettered(h: Harness) -> None:
    step = h.plan(None, plan("a"))
    [letter] = h.dead_letters(step, h.settings.topic_accounts_dlq)
    assert letter["error"].startswith("key: missing")
    assert plan_of(h.store, "a") is None
    assert h.counter("moments_plan_records_total", outcome="invalid") == 1


# 9. An override <= 0 is left out; the plan and status it came with apply.
def test_an_invalid_override_is_left_out_and_counted_while_the_plan_applies(h: Harness) -> None:
    h.plan(b"a", plan("a", plan_id="starter"))
    step = h.plan(
        b"a",
        plan(
            "a",
            plan_id="growth",
            status="paused",
            updated="2026-11-02T00:00:00Z",
            limits={"api_calls": 0, "seats": 7},
        ),
    )
    assert h.dead_letters(step, h.settings.topic_accounts_dlq) == []
    held = plan_of(h.store, "a")
    assert held is not None
    assert (held.plan_id, held.status, held.limits) == ("growth", "paused", {"seats": Decimal(7)})
    assert h.counter("moments_plan_entries_left_out_total", field="limits") == 1


# 5. A tombstone forgets the whole account, and older plan records stay forgotten.
def test_a_tombstone_forgets_everything_so_a_recreated_account_is_announced_again(
    h: Harness,
) -> None:
    h.plan(b"a", plan("a"))
    assert h.events(h.usage(usage("a", 8500)), "threshold-near")
    tombstone_ms = NOW_MS - 1000
    h.plan(b"a", None, timestamp=tombstone_ms)
    assert plan_of(h.store, "a") is None
    assert totals_of(h.store, "a").periods == {}
    assert not announced_of(h.store, "a").levels
    assert daily_of(h.store, "a").metrics == {}

    # A replay of a plan record older than the deletion is not applied after it...
    h.plan(b"a", plan("a", updated=to_rfc3339(tombstone_ms - 60_000)))
    assert plan_of(h.store, "a") is None
    assert h.counter("moments_plan_records_total", outcome="stale") == 1
    # ...a newer one re-creates the account, which starts from nothing in the same period.
    h.plan(b"a", plan("a", updated=to_rfc3339(tombstone_ms + 60_000)))
    [near] = h.events(h.usage(usage("a", 8500)), "threshold-near")
    assert near["usage"]["total"] == 8500


# 6. Usage sent before the plan counts in the plan's period, whatever its anchor.
@pytest.mark.parametrize("anchor", ["2026-01-10T00:00:00Z", None])
def test_usage_before_the_plan_counts_in_its_period_with_any_anchor(
    h: Harness, anchor: str | None
) -> None:
    h.usage(usage("a", 9000, at_ms=NOW_MS - 3 * DAY_MS))  # plan unknown: a calendar month
    extra = {} if anchor is None else {"billing_anchor": anchor}
    h.plan(b"a", plan("a", **extra))  # Starter, 10,000 API calls
    [near] = h.events(h.usage(usage("a", 500)), "threshold-near")
    assert near["usage"]["total"] == 9500
    assert near["period"]["start"] == ("2026-11-10T00:00:00Z" if anchor else "2026-11-01T00:00:00Z")


def test_an_anchor_change_moves_the_period_total_with_it(h: Harness) -> None:
    h.plan(b"a", plan("a"))  # calendar months
    h.usage(
        usage("a", 4000, at_ms=NOW_MS - 12 * DAY_MS), usage("a", 4500, at_ms=NOW_MS - 2 * DAY_MS)
    )
    # From the 10th: only the 4,500 of the 18th is in the new period (from Nov 10); the
    # 4,000 of the 8th are in the closed one, kept for its anniversary (no pass judged it).
    h.plan(b"a", plan("a", updated="2026-11-19T00:00:00Z", billing_anchor="2026-01-10T00:00:00Z"))
    periods = totals_of(h.store, "a").periods["api_calls"]
    assert {to_rfc3339(span[0]): total for span, total in periods.items()} == {
        "2026-10-10T00:00:00Z": 4000,
        "2026-11-10T00:00:00Z": 4500,
    }
    [near] = h.events(h.usage(usage("a", 3600)), "threshold-near")
    assert near["usage"]["total"] == 8100


# 7. A drop event says when the limit was reached earlier in the period.
def test_the_limit_reached_time_is_kept_for_later_events(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    reached_ms = NOW_MS - 5 * DAY_MS
    h.usage(usage("a", 10_000, at_ms=reached_ms))
    announced = announced_of(h.store, "a")
    [(key, at_ms)] = announced.reached.items()
    assert at_ms == reached_ms
    # The drop evaluation reads it from there (agents.drops._reached_at).
    from agents.drops import _reached_at
    from domain.intake.accounts import period_of

    held = plan_of(h.store, "a")
    period = period_of(held, NOW_MS, h.runtime.catalog)
    assert _reached_at(StepState(h.store), "a", "api_calls", period, "starter") == reached_ms


# 4. Stale state goes in the daily sweep, for accounts that send nothing more too.
def test_the_daily_sweep_prunes_periods_that_no_longer_accept_records(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    h.usage(usage("a", 9000))  # announces 0.8 in November
    h.usage(usage("silent", 5))  # an account that never has a plan
    assert totals_of(h.store, "a").periods and announced_of(h.store, "a").levels

    # Two months later, with no record since: the sweep runs with the day's evaluation, after
    # the anniversary pass that announced the closed periods (they are kept until then).
    later = NOW_MS + 60 * DAY_MS
    grace_ms = int(h.settings.late_grace_s * 1000)
    start = Step(0, StepState(h.store), later)
    put_pass(start.state, 0, Pass(due_cut(later, grace_ms), "", None))
    h.store.apply(start.state.updates())
    anniversaries = Step(0, StepState(h.store), later)
    AnniversaryEvaluation(h.runtime, slice_budget_s=UNBOUNDED).run_slice(anniversaries)
    h.store.apply(anniversaries.state.updates())
    step = Step(0, StepState(h.store), later)
    put_evaluation(step.state, 0, Evaluation(later // DAY_MS - 1, ""))
    h.store.apply(step.state.updates())
    sweep = Step(0, StepState(h.store), later)
    DropEvaluation(h.runtime, slice_budget_s=UNBOUNDED).run_slice(sweep)
    h.store.apply(sweep.state.updates())
    for account in ("a", "silent"):
        assert totals_of(h.store, account).periods == {}
        assert not announced_of(h.store, account).levels
    # The daily history is past its retention too, so the accounts' keys are gone.
    assert list(h.store.items(DAILY.name, None)) == []


def test_a_sweep_keeps_the_daily_key_while_other_state_remains(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    h.usage(usage("a", 9000))
    # 40 days on, the daily history is gone, but pretend a long late grace keeps the period.
    later = NOW_MS + 40 * DAY_MS
    object.__setattr__(h.runtime.settings, "late_grace_s", 40 * 86_400.0)
    step = Step(0, StepState(h.store), later)
    put_evaluation(step.state, 0, Evaluation(later // DAY_MS - 1, ""))
    h.store.apply(step.state.updates())
    sweep = Step(0, StepState(h.store), later)
    DropEvaluation(h.runtime, slice_budget_s=UNBOUNDED).run_slice(sweep)
    h.store.apply(sweep.state.updates())
    assert totals_of(h.store, "a").periods  # still accepting late records
    assert [k for k, _ in h.store.items(DAILY.name, None)] == [b"a"]  # so the sweep comes back


# 10. emitted_at is the time of emission.
def test_emitted_at_is_when_the_event_was_made_not_when_the_step_started(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    before_ms = int(time.time() * 1000)
    [near] = h.events(h.usage(usage("a", 8000)), "threshold-near")
    emitted_ms = int(datetime.fromisoformat(near["emitted_at"]).timestamp() * 1000)
    assert emitted_ms >= before_ms > NOW_MS  # the step's own "now" is NOW_MS


def test_a_leap_second_is_counted_not_dead_lettered(h: Harness) -> None:
    h.plan(b"a", plan("a"))
    value = usage("a", 3)
    value["timestamp"] = "2016-12-31T23:59:60Z"  # the last leap second so far
    step = h.usage(value)
    assert h.dead_letters(step, h.settings.topic_usage_dlq) == []
    assert h.counter("moments_records_total", outcome="late") == 1  # counted, in its period


def test_a_period_total_the_decimal_context_would_round_is_dead_lettered(h: Harness) -> None:
    # 1e25 + 0.001 needs 29 digits: Python's default context (28) would round it silently.
    h.plan(b"a", plan("a", plan_id="enterprise"))
    h.usage(usage("a", 1e25, metric="events"))  # a sum (storage is a peak: no addition)
    step = h.usage(usage("a", 0.001, metric="events"))
    [letter] = h.dead_letters(step, h.settings.topic_usage_dlq)
    assert "cannot carry exactly" in letter["error"]
    [(_, total)] = totals_of(h.store, "a").periods["events"].items()
    assert total == Decimal("1e25")
