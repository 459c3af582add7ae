"""The shortcut of :func:`domain.moments.custom.detect_custom`: a window whose days lie in the
billing period is at most the period's value (``sum``, ``count``, ``max``), so a rule above
that value is passed over, but only when the window's last day ends with the period at the
latest (a period ending mid-day shares its last day with the next one)."""

from __future__ import annotations

from domain.intake.accounts import AccountPlan
from tests.unit.test_custom_moments import NOW, World, catalog, rule


def _anchored(world: World) -> None:
    # The period ends at 11:30 on NOW's day (12:00): that day belongs to two periods.
    anchor = NOW - 30 * 60_000
    world.plans["a"] = AccountPlan("a", "starter", anchor, "active", {}, 0, active_since_ms=0)


def test_a_sum_window_holding_the_next_periods_records_is_judged() -> None:
    world = World(catalog(rule(id="sum-1d", window="1d", at_least=3)))
    _anchored(world)
    # The new period's record: 2 that day, below 3.
    assert world.run([world.raw("a", timestamp=NOW - 10 * 60_000, quantity=2)]).moments == []
    # The ending period's record (in its grace): its period holds 2, the day 4.
    late = world.run([world.raw("a", timestamp=NOW - 40 * 60_000, quantity=2)]).moments
    assert [m.kind for m in late] == ["custom.sum-1d"]
    assert late[0].payload["custom"]["value"] == 4


def test_a_max_window_inside_the_period_is_bounded_by_its_peak() -> None:
    world = World(catalog(rule(id="max-2d", metric="storage", window="2d", at_least=3)))
    world.plans["a"] = AccountPlan("a", "starter", None, "active", {}, 0, active_since_ms=0)
    assert world.run([world.raw("a", metric="storage", quantity=2)]).moments == []
    fired = world.run([world.raw("a", metric="storage", quantity=3)]).moments
    assert [m.kind for m in fired] == ["custom.max-2d"]
