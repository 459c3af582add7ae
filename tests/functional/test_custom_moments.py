"""Moments you define (contract 3.8) through the real handlers, the ticks handler and the
at_most day close, against a real RocksDB store (the harness of test_reliability)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.custom_close import CustomClose
from agents.plans import PlansHandler
from agents.ticks import TicksHandlers
from agents.usage import UsageHandler
from app.main import build_runtime
from config.settings import load_settings
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.plans.periods import day_start_ms, utc_day
from domain.wording.custom import custom_event_id, day_text
from engine.step import Step
from state.transaction import StepState
from tables.accounts import plan_of, put_plan
from tables.custom_closes import close_of
from tables.custom_firings import firings_of
from tests.functional.test_reliability import NOW_MS, Harness, plan, usage
from tests.harness.steps import Record, commit
from tests.schema import assert_valid
from web.views import account_view

ROOT = Path(__file__).resolve().parents[2]
TODAY = utc_day(NOW_MS)  # 2026-11-20
UNBOUNDED = float("inf")

RULES = """
[[moments]]
id = "busy-week"
metric = "events"
window = "7d"
at_least = 3
plans = ["starter"]
title = "{value} {unit} this week"
body = "You sent {value} {unit} in {window_days} days on {plan_name}."
action = "offer"
offer = "a free export"

[[moments]]
id = "quiet-week"
metric = "api_calls"
window = "7d"
at_most = 0
title = "A quiet week"
body = "No {unit} in {window_days} days: {plan_name} can be paused."
action = "pause"
"""


def shipped_without_rules() -> str:
    """The shipped catalog without its example ``[[moments]]`` rules (they come last): these
    tests judge their own rules (one is a quiet-week too)."""
    text = (ROOT / "config" / "plans.toml").read_text("utf-8")
    head, rules = re.split(r"(?m)^\[\[moments\]\]", text, maxsplit=1)
    assert not re.search(r"(?m)^\[(?!\[moments\]\])", rules), "a table after the rules"
    return head


class RulesHarness(Harness):
    """The harness with the shipped catalog's plans and meters (not its example rules) plus
    ``rules`` (:data:`RULES` unless given)."""

    def __init__(self, tmp_path: Path, now_ms: int, rules: str = RULES) -> None:
        super().__init__(tmp_path, now_ms)
        plans = tmp_path / "plans.toml"
        plans.write_text(shipped_without_rules() + rules, "utf-8")
        self.settings = load_settings(
            {
                "MOMENTS_DATA_DIR": str(tmp_path),
                "MOMENTS_PARTITIONS": "1",
                "MOMENTS_PLANS_FILE": str(plans),
            }
        )
        self.runtime = build_runtime(self.settings, CollectorRegistry())
        self.usage_handler = UsageHandler(self.runtime)
        self.plans_handler = PlansHandler(self.runtime)
        self.close = CustomClose(self.runtime, slice_budget_s=UNBOUNDED)
        self.ticks = TicksHandlers(self.close)

    def tick(self, day: int) -> Step:
        """A day tick, then the day close's slices until done; the last slice's step."""
        topic = self.settings.topic_ticks
        record = Record(b"tick", orjson.dumps({"day": day, "cut": 0}), 1, self.now_ms, topic)
        step = self._run(self.ticks, topic, [record])
        while self.close.pending(self.store, 0):
            step = Step(0, StepState(self.store), self.now_ms)
            self.close.run_slice(step)
            commit(self.store, step)
        return step

    def custom(self, step: Step, rule: str) -> list[dict[str, Any]]:
        events = self.events(step, f"custom.{rule}")
        for event in events:
            assert_valid(event)
        return events


@pytest.fixture
def h(tmp_path: Path) -> Iterator[RulesHarness]:
    harness = RulesHarness(tmp_path, NOW_MS)
    yield harness
    harness.store.close()


def test_an_at_least_rule_fires_in_the_usage_step_with_its_firing(h: RulesHarness) -> None:
    h.plan(b"a", plan("a"))
    h.plan(b"g", plan("g", "growth"))  # not on a plan the rule is for
    at = NOW_MS - 3000
    step = h.usage(
        *(usage(acct, 1, at_ms=at + i, metric="events") for acct in "ag" for i in range(3))
    )
    [event] = h.custom(step, "busy-week")
    assert event["account_id"] == "a"
    assert event["custom"] == {"rule": "busy-week", "window": "7d", "value": 3, "threshold": 3}
    assert event["event_id"] == custom_event_id("busy-week", "a", "events", day_text(TODAY - 6))
    assert event["message"]["title"] == "3 events this week"
    assert event["suggestion"]["offer"] == "a free export"
    assert firings_of(h.store, "a").fired["busy-week"].at_ms == at + 2
    assert h.counter("moments_events_total", kind="custom.busy-week") == 1
    # The cooldown (the window: 7 days) holds back the next records.
    assert h.custom(h.usage(usage("a", 5, metric="events")), "busy-week") == []


def test_the_day_close_fires_at_most_rules_once_for_accounts_active_all_window(
    h: RulesHarness,
) -> None:
    long_ago = NOW_MS - 30 * DAY_MS
    h.plan(b"quiet", plan("quiet"), timestamp=long_ago)
    h.plan(b"busy", plan("busy"), timestamp=long_ago)
    h.plan(b"new", plan("new"), timestamp=NOW_MS - 2 * DAY_MS)
    h.plan(b"paused", plan("paused", status="paused"), timestamp=long_ago)
    h.usage(usage("busy", 5, at_ms=day_start_ms(TODAY - 1) + 1000))
    step = h.tick(TODAY - 1)
    [event] = h.custom(step, "quiet-week")
    assert event["account_id"] == "quiet"
    assert event["custom"] == {"rule": "quiet-week", "window": "7d", "value": 0, "threshold": 0}
    assert event["triggered_at"] == "2026-11-20T00:00:00Z"
    assert event["event_id"] == custom_event_id("quiet-week", "quiet", "api_calls", "2026-11-13")
    assert event["suggestion"]["action"] == "pause"
    assert close_of(h.store, 0) is not None and close_of(h.store, 0).done
    assert h.counter("moments_events_total", kind="custom.quiet-week") == 1
    # A repeated tick finds the day done; the next day's close is held back by the cooldown.
    assert h.custom(h.tick(TODAY - 1), "quiet-week") == []
    h.now_ms = NOW_MS + DAY_MS
    assert h.custom(h.tick(TODAY), "quiet-week") == []


def test_a_plan_stored_without_active_since_gets_the_pass_time(h: RulesHarness) -> None:
    h.plan(b"old", plan("old"))
    held = plan_of(h.store, "old")
    assert held is not None and held.active_since_ms == NOW_MS  # the record's timestamp
    step = Step(0, StepState(h.store), NOW_MS)
    put_plan(step.state, "old", held.with_active_since(None))  # as an older version stored it
    h.store.apply(step.state.updates())
    assert h.custom(h.tick(TODAY - 1), "quiet-week") == []
    again = plan_of(h.store, "old")
    assert again is not None and again.active_since_ms == NOW_MS


def test_without_at_most_rules_the_close_is_not_wired(tmp_path: Path) -> None:
    harness = Harness(tmp_path, NOW_MS)
    try:
        assert CustomClose.wanted(harness.runtime)  # the shipped catalog's quiet-week
        catalog = harness.runtime.catalog
        at_least = tuple(rule for rule in catalog.moments if rule.at_least)
        object.__setattr__(harness.runtime, "catalog", replace(catalog, moments=at_least))
        assert not CustomClose.wanted(harness.runtime)
    finally:
        harness.store.close()


def test_the_account_view_shows_when_each_rule_last_fired(h: RulesHarness) -> None:
    h.plan(b"a", plan("a"))
    at = NOW_MS - 3000
    h.usage(*(usage("a", 1, at_ms=at + i, metric="events") for i in range(3)))
    found = account_view(h.store, 0, h.runtime.catalog, "a")
    assert found is not None
    # The cooldown of a window rule without one of its own is its window (7 days).
    assert found["moments_fired"] == {
        "busy-week": {
            "last_fired_at": to_rfc3339(at + 2),
            "cooldown_until": to_rfc3339(at + 2 + 7 * DAY_MS),
        }
    }
    h.plan(b"b", plan("b"))
    assert account_view(h.store, 0, h.runtime.catalog, "b")["moments_fired"] == {}  # type: ignore[index]
