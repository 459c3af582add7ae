"""Review of the moments you define (contract 3.8): cases the first tests did not reach.

Each test names the contract's promise it checks; they use the unit world of
:mod:`tests.unit.test_custom_moments` (the usage path and the day close over JSON state).
"""

from __future__ import annotations

from tests.unit.factories import ms
from tests.unit.test_custom_moments import World, catalog, custom, plan, rule


def test_a_period_rule_fires_once_per_period_when_the_previous_period_fires_in_between() -> None:
    # Contract 3.8 + design notes: a "period" window fires at most once per (account, period)
    # (its event id is the period's). Records of the period just ended are still accepted for
    # MOMENTS_LATE_GRACE (1 h), so around a period boundary they interleave with the new
    # period's: the March record after April's firing must not fire March or April again.
    world = World(catalog(rule(window="period", at_least=1, cooldown=None)))
    world.plans["a"] = plan()
    now = ms("2026-04-01T00:10:00")
    march = world.run([world.raw(timestamp=ms("2026-03-31T23:00:00"))], now_ms=now)
    april = world.run([world.raw(timestamp=ms("2026-04-01T00:05:00"))], now_ms=now)
    assert [m.payload["period"]["start"] for m in march.moments if m.kind == "custom.r"] == [
        "2026-03-01T00:00:00Z"
    ]
    assert [m.payload["period"]["start"] for m in april.moments if m.kind == "custom.r"] == [
        "2026-04-01T00:00:00Z"
    ]
    # A delayed March record (not late: its period ended 10 minutes ago) ...
    again = world.run([world.raw(timestamp=ms("2026-03-31T23:59:00"))], now_ms=now)
    assert custom(again.moments) == []  # March already fired: same event id
    # ... and April's next record.
    assert (
        custom(world.run([world.raw(timestamp=ms("2026-04-01T00:06:00"))], now_ms=now).moments)
        == []
    )


def test_a_late_record_counts_in_a_rolling_window_whatever_the_batch() -> None:
    # Contract 3.8: an at_least window's value is "the current partial day included" over the
    # daily values, and 3.1/3.2: a late record (its period over) still counts in the daily
    # totals. The replay skips late records of the batch, so the same records give a firing
    # or none depending on how they were batched (a poison narrowing splits batches).
    rules = catalog(rule(window="7d", at_least=6))
    now = ms("2026-04-02T12:00:00")  # March ended 36 h ago: a March record is late

    def run(split: bool) -> list[object]:
        world = World(rules)
        world.plans["a"] = plan()
        late = world.raw(timestamp=ms("2026-03-30T12:00:00"), quantity=5)
        today = world.raw(timestamp=ms("2026-04-02T11:00:00"), quantity=1)
        if split:
            world.run([late], now_ms=now)
            return [m.payload["custom"]["value"] for m in world.run([today], now_ms=now).moments]
        return [m.payload["custom"]["value"] for m in world.run([late, today], now_ms=now).moments]

    assert run(split=True) == [6]
    assert run(split=False) == [6]
