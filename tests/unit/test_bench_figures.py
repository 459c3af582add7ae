"""``make bench`` measures what issue 20 asks: every figure also relative to the baseline loop
of the same run, the scaling verdict on CPU per record, and a latency workload whose day
close, drop evaluation and billing anniversaries fall due while the load runs (the worker has
no fake clock, so the bench times them with a drop grace and billing anchors)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.moments.evaluation import due_day
from domain.plans.periods import period_containing_ms, utc_day
from domain.rules.anniversaries import due_cut

SCRIPTS = Path(__file__).parents[2] / "scripts"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _import(name: str) -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return __import__(f"benchmark.{name}", fromlist=[name])


@pytest.fixture(scope="module")
def report() -> ModuleType:
    """scripts/benchmark/report.py."""
    return _import("report")


@pytest.fixture(scope="module")
def workload() -> ModuleType:
    """scripts/benchmark/workload.py."""
    return _import("workload")


# -- ratios to the baseline loop ------------------------------------------------------------


def test_each_kind_of_figure_relative_to_the_baseline(report: ModuleType) -> None:
    ref = report.BaselineRef(rate=100_000.0, seconds=3.0, cpu_us=4.0)
    assert report.vs_baseline("rate", 35_000.0, ref) == "35.0% of baseline"
    assert report.vs_baseline("time", 0.25, ref) == "0.08x baseline backlog read"
    assert report.vs_baseline("cpu", 40.0, ref) == "10.0x baseline CPU/rec"


def test_no_ratio_without_a_baseline_or_a_value(report: ModuleType) -> None:
    ref = report.BaselineRef(rate=100_000.0, seconds=3.0, cpu_us=4.0)
    assert report.vs_baseline("rate", 1.0, None) == ""
    assert report.vs_baseline("time", float("nan"), ref) == ""
    assert report.vs_baseline("cpu", 1.0, report.BaselineRef(0.0, 0.0, 0.0)) == ""


def test_the_table_has_a_baseline_column(report: ModuleType) -> None:
    ref = report.BaselineRef(rate=200_000.0, seconds=1.5, cpu_us=3.0)
    rows = [
        report.Row((3, 1), "latency p99", "300 ms", "< 250 ms", "MISSED", ("time", 0.3)),
        report.Row((1, 0), "1 worker", "50,000/s", ">= 35%", "met", ("rate", 50_000.0)),
        report.Row((4, 2), "peak RSS", "200 MB", "< 600 MB", "met"),
    ]
    lines = report.table_lines(rows, ref)
    assert "vs baseline loop" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["1", "latency", "peak"]  # by figure
    assert "25.0% of baseline" in lines[1]
    assert "0.20x baseline backlog read" in lines[2]
    assert lines[3].split("  ")[0].strip() == "peak RSS"
    assert " - " in lines[3]  # memory has no ratio


def test_share_verdict(report: ModuleType) -> None:
    ref = report.BaselineRef(rate=100_000.0, seconds=3.0, cpu_us=4.0)
    assert report.share_verdict(36_000.0, ref, 0.35).startswith("met (36.0% of baseline")
    missed = report.share_verdict(14_000.0, ref, 0.35)
    assert missed.startswith("MISSED by 21.0% of baseline")
    assert "21,000 rec/s short" in missed
    assert report.share_verdict(1.0, None, 0.35).startswith("not judged")


def test_cpu_scaling_verdict() -> None:
    scaling = _import("scaling")
    assert scaling.cpu_scaling_verdict(40.0, 43.0).startswith("met (1.07x")
    assert scaling.cpu_scaling_verdict(40.0, 52.0).startswith("MISSED by 0.20x (1.30x")
    assert scaling.cpu_scaling_verdict(float("nan"), 52.0).startswith("not judged")


# -- the latency section's background work ---------------------------------------------------


def utc_day_of_month(ts_ms: int) -> int:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).day


NOW = st.integers(min_value=1_600_000_000_000, max_value=2_000_000_000_000)


@given(now=NOW, warmup=st.floats(5, 120), seconds=st.floats(5, 120))
def test_yesterday_closes_during_the_load(
    workload: ModuleType, now: int, warmup: float, seconds: float
) -> None:
    plan = workload.background_plan(now, warmup, seconds, 10, HOUR_MS)
    grace = plan.drop_grace_ms
    assert 0 <= grace < DAY_MS  # MOMENTS_DROP_GRACE accepts at most a day
    assert plan.load_start_ms < plan.close_at_ms < plan.load_start_ms + 1000 * seconds
    # The worker's own rule (agents.ticks): one more day is due from close_at on, and the
    # day due at the start is the one before (evaluated during the warm-up).
    at_start = due_day(now, grace)
    assert due_day(plan.close_at_ms - 1, grace) == at_start
    assert due_day(plan.close_at_ms, grace) == at_start + 1
    assert due_day(plan.close_at_ms, grace) == utc_day(plan.close_at_ms) - 1


@given(now=NOW, count=st.integers(1, 50))
def test_anniversaries_fall_due_during_the_load_not_before(
    workload: ModuleType, now: int, count: int
) -> None:
    seconds = 30.0
    plan = workload.background_plan(now, 40.0, seconds, count, HOUR_MS)
    data = workload.Dataset("r", "latency", "latency", "u", "p", 4, [], {})
    ids = workload.add_anniversary_accounts(data, plan, 7)
    assert len(ids) == count == len(data.accounts)
    end_of_load = plan.load_start_ms + 1000 * seconds
    for account, end, due in zip(
        ids, plan.anniversary_ends_ms, plan.anniversary_due_ms, strict=True
    ):
        anchor = data.anchors[account]
        # A billing period (the worker's own period rule) ends at the end: the first one,
        # from the anchor (so the anniversary completes a period and sends its recap), or,
        # on the 29th-31st, the one before the anchor.
        period = period_containing_ms(end - 1, anchor, "month")
        assert period.end_ms == end
        if utc_day_of_month(end) <= 28:
            assert period.start_ms == anchor
        # It becomes final (the worker's cut reaches it) during the load, not before.
        assert due_cut(plan.load_start_ms, HOUR_MS) < end
        assert due_cut(due, HOUR_MS) >= end
        assert plan.load_start_ms < due < end_of_load
        assert data.plans[account] in workload.LIMITS


@given(now=NOW, days=st.integers(1, 27))
def test_history_lies_in_the_current_billing_period(
    workload: ModuleType, now: int, days: int
) -> None:
    data = workload.Dataset("r", "latency", "latency", "u", "p", 4, ["b", "a"], {})
    data.plans = {"a": "growth", "b": "free"}
    records = list(workload.history_records(data, ["b", "a"], now, days))
    assert data.records == len(records) == 2 * days  # neither dips: b is small, a not 1 in 5
    anchor = data.anchors["a"]
    current = period_containing_ms(now, anchor, "month")
    stamps = [orjson.loads(value)["timestamp"] for _, value in records]
    assert all(current.start_ms <= ts < now for ts in stamps)  # never late
    assert {utc_day(ts) for ts in stamps} == set(range(utc_day(now) - days, utc_day(now)))
    assert current.end_ms > now + HOUR_MS  # the period does not turn during the run


def test_drop_dip_is_seen_by_yesterdays_evaluation_only(workload: ModuleType) -> None:
    daily = [workload.history_quantity("growth", 0, ago) for ago in range(1, 9)]
    normal = workload.history_quantity("growth", 1, 1)
    assert daily[4:] == [normal] * 4
    assert daily[:3] == [0, normal // 5, normal // 5]
    # Recent three days against the usual: above 30 % the day before, below it yesterday
    # (the default MOMENTS_DROP_FRACTION 0.7 reports recent <= 30 % of expected).
    assert sum(daily[1:4]) > 0.3 * 3 * normal
    assert sum(daily[0:3]) <= 0.3 * 3 * normal
    # Accounts too small for the rules' minimum expected volume (100) never dip.
    assert [workload.history_quantity("free", 0, ago) for ago in (1, 2)] == [5, 5]


def test_background_work_is_counted_from_the_workers_log() -> None:
    latency = _import("latency")
    lines = [
        "INFO agents.ticks: partition 0: day 20793 closed, cut None due and backlog consumed"
        " ({'u:0': 5}); tick sent",
        "INFO agents.ticks: partition 1: day 20793 closed, cut 1796601600000 due and backlog"
        " consumed ({'u:1': 5}); tick sent",
        "INFO agents.drops: partition 0: evaluating day 20793 for drops",
        "INFO agents.drops: partition 0: day 20793 evaluated for drops",
        "INFO agents.anniversaries: partition 1: timer pass at cut 1796601600000 started",
        "INFO agents.anniversaries: partition 1: anniversary (full) pass at cut 17 started",
        "INFO agents.anniversaries: partition 1: anniversary pass at cut 1796601600000 complete",
        "INFO engine.checkpoint: last 10s: 100 records in 4 steps",
    ]
    assert latency.count_background(lines) == {
        "ticks sent": 2,
        "drop evaluations started": 1,
        "drop evaluations done": 1,
        "timer passes started": 2,
        "timer passes complete": 1,
    }


def test_worker_histogram_quantile_over_the_load_only() -> None:
    latency = _import("latency")
    from tests.harness.metrics import Metrics

    def histogram(counts: dict[str, int]) -> Metrics:
        lines = [
            f'moments_event_latency_seconds_bucket{{le="{le}"}} {n}' for le, n in counts.items()
        ]
        return Metrics("\n".join(lines) + "\n")

    # The warm-up's history waited 30 s (bucket 60); the load's events 0.05-0.1 s.
    before = histogram({"0.1": 0, "1.0": 0, "60.0": 100, "+Inf": 100})
    after = histogram({"0.1": 100, "1.0": 100, "60.0": 200, "+Inf": 200})
    name = "moments_event_latency_seconds"
    assert latency.quantile_since(before, after, name, 0.99) == pytest.approx(0.099)
    assert after.histogram_quantile(name, 0.99) > 50  # what the whole histogram said
    assert latency.quantile_since(after, after, name, 0.5) is None


def test_step_figures_from_the_engines_summaries() -> None:
    latency = _import("latency")
    lines = [
        "INFO engine.checkpoint: last 10s: 1000 records in 10 steps (100 per step), 50 messages"
        " out; per step 20.0 ms, of which 10.0 ms in the Kafka commit",
        "INFO engine.checkpoint: last 10s: 3000 records in 30 steps (100 per step), 50 messages"
        " out; per step 40.0 ms, of which 30.0 ms in the Kafka commit",
        "INFO agents.drops: partition 0: evaluating day 20793 for drops",
    ]
    assert latency.step_figures(lines) == (
        "40 steps of 100 records, 35.0 ms each of which 25.0 ms in the Kafka commit"
        " (worker's log, 10 s summaries)"
    )
    assert latency.step_figures(lines[2:]) == "the worker's log has no step summary"


def test_step_figures_with_the_time_deciding() -> None:
    latency = _import("latency")
    lines = [
        "INFO engine.checkpoint: last 10s: 1000 records in 10 steps (100 per step), 50 messages"
        " out; per step 20.0 ms, of which 10.0 ms in the Kafka commit; deciding 8.0 ms, of"
        " which 2.0 ms waiting for the decide thread",
        "INFO engine.checkpoint: last 10s: 3000 records in 30 steps (100 per step), 50 messages"
        " out; per step 40.0 ms, of which 30.0 ms in the Kafka commit; deciding 4.0 ms, of"
        " which 1.0 ms waiting for the decide thread",
    ]
    assert latency.step_figures(lines) == (
        "40 steps of 100 records, 35.0 ms each of which 25.0 ms in the Kafka commit, 5.0 ms"
        " deciding (1.2 ms of it waiting for the decide thread) (worker's log, 10 s summaries)"
    )


def test_the_engines_step_summary_is_what_the_bench_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from engine.checkpoint import StepStats

    latency = _import("latency")
    stats = StepStats(every_s=0.0)
    stats.records = 300
    stats.add(10, 0.040, 0.010, 0.020, 0.005)
    stats.add(10, 0.020, 0.010, 0.010, 0.001)
    with caplog.at_level(logging.INFO, logger="engine.checkpoint"):
        stats.maybe_log()
    assert latency.step_figures([r.getMessage() for r in caplog.records]) == (
        "2 steps of 150 records, 30.0 ms each of which 10.0 ms in the Kafka commit, 15.0 ms"
        " deciding (3.0 ms of it waiting for the decide thread) (worker's log, 10 s summaries)"
    )
