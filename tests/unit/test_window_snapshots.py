"""The days a rolling rule replays are those before the batch, copied only when it changes them
(:class:`domain.moments.custom.WindowSnapshots`)."""

from __future__ import annotations

from decimal import Decimal

from domain.common.timeutil import DAY_MS
from domain.intake.daily import AccountDaily, DailyReadings, DailyTotals
from domain.moments.custom import WindowSnapshots


def _daily() -> AccountDaily:
    totals = DailyTotals()
    totals.add(10 * DAY_MS, Decimal(3))
    totals.add(20 * DAY_MS, Decimal(4))
    readings = DailyReadings("max")
    readings.fold(10 * DAY_MS, Decimal(7))
    readings.fold(20 * DAY_MS, Decimal(2))
    return AccountDaily.from_json(AccountDaily({"calls": totals, "gb": readings}).to_json())


def test_a_metric_the_batch_changes_is_replayed_from_its_days_before() -> None:
    snapshots = WindowSnapshots(frozenset({"calls", "gb"}))
    stored = _daily()
    daily = snapshots.wrap(lambda _: stored)("a")
    daily.add("calls", 20 * DAY_MS, Decimal(5))
    daily.fold("gb", "max", 20 * DAY_MS, Decimal(9))
    daily.prune(15)
    snapshots.release()
    assert daily.watcher is None
    assert snapshots.before("a", "calls") == _daily().metrics["calls"]
    assert snapshots.before("a", "gb") == _daily().metrics["gb"]
    assert daily.metrics["calls"].total(20) == Decimal(9)  # the state itself moved on


def test_a_metric_only_pruned_is_replayed_with_the_days_pruned() -> None:
    snapshots = WindowSnapshots(frozenset({"calls", "gb"}))
    stored = _daily()
    daily = snapshots.wrap(lambda _: stored)("a")
    daily.prune(15)
    assert snapshots.before("a", "calls") == _daily().metrics["calls"]
    assert snapshots.before("a", "gb") == _daily().metrics["gb"]
    assert 10 not in daily.metrics["calls"].days


def test_an_unchanged_metric_is_copied_when_read_and_an_unread_account_has_no_days() -> None:
    snapshots = WindowSnapshots(frozenset({"calls"}))
    stored = _daily()
    daily = snapshots.wrap(lambda _: stored)("a")
    copy = snapshots.before("a", "calls")
    assert copy == daily.metrics["calls"]
    assert copy is not daily.metrics["calls"]
    assert isinstance(copy, DailyTotals)
    copy.add(20 * DAY_MS, Decimal(1))
    assert daily.metrics["calls"].total(20) == Decimal(4)
    assert snapshots.before("b", "calls") is None
    assert snapshots.before("a", "seats") is None


def test_readings_copy_is_independent() -> None:
    readings = DailyReadings("latest")
    readings.fold(10 * DAY_MS, Decimal(7))
    copy = readings.copy()
    readings.fold(10 * DAY_MS + 5, Decimal(1))
    readings.prune(11)
    assert copy.total(10) == Decimal(7)
    assert readings.total(10) == Decimal(1)
    assert DailyReadings.from_json(copy.to_json()) == copy
