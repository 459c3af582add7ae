"""The bench's delivery section's pure pieces (scripts/benchmark/delivery.py): the events it
makes, first arrivals, latencies, the steady pace, and the nearest-rank percentile it reports
(scripts/benchmark/latency.py's, shared with the engine's latency section)."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.receiver import Received

SCRIPTS = Path(__file__).parents[2] / "scripts"


def _bench() -> ModuleType:
    """scripts/benchmark/delivery.py (the bench's modules are not a package on the path)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from benchmark import delivery

    return delivery


def received(webhook_id: str, status: int, at: float) -> Received:
    return Received("/bench", webhook_id, b"{}", {}, True, status, at)


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=200), st.floats(min_value=0.001, max_value=1.0))
def test_percentile_is_the_nearest_rank(values: list[float], q: float) -> None:
    ordered = sorted(values)
    got = _bench().percentile(ordered, q)
    # Oracle: the smallest value with at least q of the values at or below it.
    oracle = next(v for v in ordered if sum(x <= v for x in ordered) >= q * len(ordered))
    assert got == oracle


def test_percentile_examples() -> None:
    bench = _bench()
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 0.5) == 50.0
    assert bench.percentile(values, 0.99) == 99.0
    assert bench.percentile(values, 1.0) == 100.0
    assert bench.percentile([7.0], 0.99) == 7.0


@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.sampled_from([200, 204, 500, 429]), finite),
        max_size=50,
    )
)
def test_first_arrivals_keep_each_ids_first_success(
    requests: list[tuple[str, int, float]],
) -> None:
    # Requests are appended in arrival order: sort by time as the receiver would see them.
    requests = sorted(requests, key=lambda r: r[2])
    got = _bench().first_arrivals([received(i, s, at) for i, s, at in requests])
    oracle: dict[str, float] = {}
    for webhook_id in {i for i, s, _ in requests if s < 300}:
        oracle[webhook_id] = min(at for i, s, at in requests if i == webhook_id and s < 300)
    assert got == oracle


def test_latencies_are_sorted_and_skip_what_did_not_arrive() -> None:
    bench = _bench()
    sent = {"a": 10.0, "b": 11.0, "c": 12.0}
    arrived = {"a": 10.5, "c": 12.1, "z": 1.0}
    assert bench.latencies(sent, arrived) == pytest.approx([0.1, 0.5])


@given(
    st.floats(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=100_000),
    st.lists(st.floats(min_value=0, max_value=1_000), min_size=1, max_size=20),
)
def test_the_pace_is_steady_monotonic_and_bounded(
    rate: float, total: int, times: list[float]
) -> None:
    due = _bench().due
    counts = [due(t, rate, total) for t in sorted(times)]
    assert counts == sorted(counts)
    for t, n in zip(sorted(times), counts, strict=True):
        assert 1 <= n <= total
        assert n == min(total, math.floor(t * rate) + 1)


def test_bench_events_are_new_events_of_their_template() -> None:
    bench = _bench()
    template = {"kind": "milestone", "event_id": "f" * 64, "account_id": "x", "emitted_at": "-"}
    now_ms = 1_796_601_600_250
    first = bench.bench_event(template, "acct-000001", 1, now_ms)
    second = bench.bench_event(template, "acct-000002", 2, now_ms)
    assert first["event_id"] != second["event_id"] != template["event_id"]
    assert len(first["event_id"]) == len(template["event_id"])
    assert (first["kind"], first["account_id"]) == ("milestone", "acct-000001")
    emitted = datetime.fromisoformat(first["emitted_at"].replace("Z", "+00:00"))
    assert emitted == datetime.fromtimestamp(now_ms / 1000, UTC)
