"""Review of the moments you define (contract 3.8) through the real handlers: the plans
handler's state without rules, and the at_most day close after a plan change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.usage import intake_rules
from app.main import build_runtime
from config.settings import load_settings
from domain.common.timeutil import DAY_MS
from tables.accounts import ACCOUNTS
from tests.functional.test_custom_moments import (
    TODAY,
    RulesHarness,
    shipped_without_rules,
)
from tests.functional.test_reliability import NOW_MS, Harness, plan

QUIET_ON_PAID = """
[[moments]]
id = "quiet-paid"
metric = "api_calls"
window = "7d"
at_most = 0
plans = ["starter", "growth", "scale"]
title = "A quiet week on {plan_name}"
body = "No {unit} in {window_days} days."
action = "pause"
"""


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Harness]:
    """A catalog without [[moments]]: the shipped one without its example rules."""
    harness = RulesHarness(tmp_path, NOW_MS, "")
    yield harness
    harness.store.close()


def test_a_catalog_without_moments_stores_plans_as_main_does(plain: Harness) -> None:
    # A catalog without [[moments]] must give the same events *and state* as before the rules:
    # the accounts table (and its changelog) held {"account_id", "plan_id", ..., "updated_at_ms"}
    # and nothing else for a plan record without members or region.
    plain.plan(b"a", plan("a"))
    held = orjson.loads(plain.store.get(ACCOUNTS.name, b"a") or b"{}")
    assert "active_since_ms" not in held, held


def test_an_at_most_rule_waits_a_whole_window_on_a_plan_it_watches(tmp_path: Path) -> None:
    # Contract 3.8: at_most rules judge "accounts whose plan was known and active before the
    # window's first day". An account quiet for weeks on Free that buys Starter yesterday has
    # not been quiet for a week *on Starter*: telling it "A quiet week on Starter", and
    # suggesting it pause the plan it bought yesterday, is the wrong moment.
    h = RulesHarness(tmp_path, NOW_MS, QUIET_ON_PAID)
    try:
        h.plan(b"a", plan("a", "free"), timestamp=NOW_MS - 30 * DAY_MS)
        h.plan(
            b"a",
            plan("a", "starter", updated="2026-11-19T10:00:00Z"),
            timestamp=NOW_MS - DAY_MS,
        )
        assert h.custom(h.tick(TODAY - 1), "quiet-paid") == []
    finally:
        h.store.close()


def test_pause_is_not_suggested_for_a_plan_that_cannot_be_paused(tmp_path: Path) -> None:
    # The built-in kinds suggest `pause` only for a pausable plan (3.2); the shipped Free plan
    # is `pausable = false` ("nothing to pause: it costs nothing"). A rule with action "pause"
    # on it tells the account "Your Free plan ($0 a month) can be paused".
    rules = QUIET_ON_PAID.replace('plans = ["starter", "growth", "scale"]\n', "")
    h = RulesHarness(tmp_path, NOW_MS, rules)
    try:
        h.plan(b"f", plan("f", "free"), timestamp=NOW_MS - 30 * DAY_MS)
        [event] = h.custom(h.tick(TODAY - 1), "quiet-paid")
        assert event["suggestion"]["action"] != "pause", event["suggestion"]
    finally:
        h.store.close()


def test_an_at_most_window_fits_in_the_days_kept_the_day_after_it_closes(
    tmp_path: Path,
) -> None:
    # Contract 3.8: at_most judges "the N days ending with" the closed day, N up to 35; the
    # daily state keeps MOMENTS_DAILY_RETENTION_DAYS (default 35) days *counting today*. The
    # day close runs the day after the judged day, when the usage path and the drop pass have
    # already pruned the account's days: with 35 kept a 35-day window's first day would read
    # as 0. So the worker keeps one day more than its longest at_most window, and the usage
    # path's and the drop pass's pruning both use that.
    rules = QUIET_ON_PAID.replace('window = "7d"', 'window = "35d"')
    plans = tmp_path / "plans.toml"
    plans.write_text(shipped_without_rules() + rules, "utf-8")
    settings = load_settings({"MOMENTS_DATA_DIR": str(tmp_path), "MOMENTS_PLANS_FILE": str(plans)})
    runtime = build_runtime(settings, CollectorRegistry())
    assert settings.daily_retention_days == 35
    assert runtime.daily_days == 36
    assert intake_rules(runtime).daily_retention_days == 36
    # A longer setting stands; without at_most rules the setting is what is kept.
    roomy = load_settings(
        {
            "MOMENTS_DATA_DIR": str(tmp_path),
            "MOMENTS_PLANS_FILE": str(plans),
            "MOMENTS_DAILY_RETENTION_DAYS": "40",
        }
    )
    assert build_runtime(roomy, CollectorRegistry()).daily_days == 40
    plain = load_settings({"MOMENTS_DATA_DIR": str(tmp_path)})
    assert build_runtime(plain, CollectorRegistry()).daily_days == 35
