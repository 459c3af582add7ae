"""No billing anniversary for a period that ended before the account's plan was known here
(contract 3.5: "every active account with a known plan"): a fresh deployment, or an account
created after its anchor, is not greeted with a recap of a period nobody observed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from domain.intake.accounts import AccountPlan
from state.transaction import StepState
from tables.accounts import ACCOUNTS, plan_of, put_plan
from tests.functional.test_anniversaries import ANCHOR, ms, run_pass, tick
from tests.functional.test_reliability import Harness, plan, usage

END = "2026-11-15T09:30:00Z"  # the first period of ANCHOR ends here


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, ms("2026-11-20T12:00:00Z"))
    yield harness
    harness.store.close()


def test_a_plan_first_published_after_the_period_ended_gets_no_recap_of_it(h: Harness) -> None:
    h.plan(b"late", plan("late", billing_anchor=ANCHOR))  # Kafka timestamp Nov 20: after END
    h.plan(b"known", plan("known", billing_anchor=ANCHOR), timestamp=ms("2026-11-01T00:00:00Z"))
    tick(h)
    events = run_pass(h)
    assert [e["account_id"] for e in events] == ["known"]
    held = plan_of(h.store, "late")
    assert held is not None and held.known_since_ms == ms("2026-11-20T12:00:00Z")

    # Its next period, observed from its start, is announced, judged as a first period.
    h.now_ms = ms("2026-11-21T09:00:00Z")
    h.usage(usage("late", 10_000, at_ms=ms("2026-11-21T08:00:00Z")))
    assert h.counter("moments_records_total", outcome="accepted") == 1
    h.now_ms = ms("2026-12-16T12:00:00Z")
    tick(h)
    by_account = {e["account_id"]: e for e in run_pass(h)}
    assert sorted(by_account) == ["known", "late"]
    late = by_account["late"]
    assert late["period"] == {"start": END, "end": "2026-12-15T09:30:00Z"}
    assert late["recap"]["anniversary"]["periods_completed"] == 2  # counted from the anchor
    assert late["suggestion"]["action"] == "upgrade"  # at its limit in its first period


def test_a_later_plan_record_keeps_when_the_account_became_known(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor=ANCHOR), timestamp=ms("2026-11-01T00:00:00Z"))
    h.plan(b"a", plan("a", billing_anchor=ANCHOR, updated="2026-11-18T00:00:00Z", members=3))
    held = plan_of(h.store, "a")
    assert held is not None and held.known_since_ms == ms("2026-11-01T00:00:00Z")
    tick(h)
    assert [e["account_id"] for e in run_pass(h)] == ["a"]


def test_an_account_created_again_after_a_tombstone_is_known_from_then(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor=ANCHOR), timestamp=ms("2026-11-01T00:00:00Z"))
    h.plan(b"a", None, timestamp=ms("2026-11-16T00:00:00Z"))
    h.plan(b"a", plan("a", billing_anchor=ANCHOR, updated="2026-11-17T00:00:00Z"))
    held = plan_of(h.store, "a")
    assert held is not None and held.known_since_ms == h.now_ms
    tick(h)
    assert run_pass(h) == []


def test_a_producer_clock_ahead_counts_as_now(h: Harness) -> None:
    ahead = h.now_ms + 86_400_000
    h.plan(b"a", plan("a", billing_anchor=ANCHOR), timestamp=ahead)
    held = plan_of(h.store, "a")
    assert held is not None and held.known_since_ms == h.now_ms


def test_a_plan_stored_before_known_since_existed_is_announced_as_before(h: Harness) -> None:
    h.plan(b"a", plan("a", billing_anchor=ANCHOR))
    held = plan_of(h.store, "a")
    assert held is not None and held.known_since_ms is not None
    # The stored form of the previous version: no known_since_ms.
    old = AccountPlan.from_json({k: v for k, v in held.to_json().items() if k != "known_since_ms"})
    assert old.known_since_ms is None
    state = StepState(h.store)
    put_plan(state, "a", old)
    h.store.apply(state.updates())
    raw = h.store.get(ACCOUNTS.name, b"a")
    assert raw is not None and "known_since_ms" not in orjson.loads(raw)
    tick(h)
    assert [e["account_id"] for e in run_pass(h)] == ["a"]
