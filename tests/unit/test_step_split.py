"""Splitting the records waiting for a partition into bounded steps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.scheduler import take

waiting_maps = st.dictionaries(
    st.sampled_from(["plans", "usage", "rekeyed", "ticks"]),
    st.lists(st.integers(), min_size=1, max_size=40),
)


@given(waiting_maps, st.integers(min_value=1, max_value=60))
def test_steps_are_bounded_and_keep_every_record_in_order(
    waiting: dict[str, list[int]], limit: int
) -> None:
    original = {t: list(v) for t, v in waiting.items()}
    rest = {t: list(v) for t, v in waiting.items()}
    steps = []
    while rest:
        step = take(rest, limit)
        assert 0 < sum(len(v) for v in step.values()) <= limit
        steps.append(step)
    for topic, records in original.items():
        assert [r for step in steps for r in step.get(topic, [])] == records
