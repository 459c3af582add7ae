"""The walker of background passes (engine.background.slice_keys), on a real store: what
the drop evaluation's and the anniversary pass's own loops did before it (review of
issue 17's D9): the cursor, the limits (keys, events, time: at least one key), an account
whose judgement raises skipped with its writes undone, and the events counted by kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.background import Sent, SliceOutcome, slice_keys
from engine.step import Step
from state.store import PartitionStore, StoreOptions, open_partition
from state.transaction import StepState

TABLE = "accounts"
OTHER = "notes"
WALK = "the test pass"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    found = open_partition(tmp_path, 0, (TABLE, OTHER), StoreOptions(cache_mb=8, write_buffer_mb=1))
    step = StepState(found)
    for name in ("a", "b", "c", "d", "e"):
        step.put(TABLE, name.encode(), b"1")
    found.apply(step.updates())
    yield found
    found.close()


def walk(
    store: PartitionStore,
    cursor: str,
    *,
    max_keys: int = 100,
    budget_s: float = float("inf"),
    max_events: int | None = None,
    fails: frozenset[str] = frozenset(),
) -> tuple[Step, SliceOutcome]:
    step = Step(0, StepState(store), 0)

    def judge(key: str, value: bytes) -> list[Sent]:
        step.state.put(OTHER, key.encode(), b"judged")
        if key in fails:
            raise ValueError("a bug in the rules")
        kind = "even" if key in ("b", "d") else "odd"
        return [(kind, key.encode(), {"key": key}), (kind, key.encode(), {"again": key})]

    done = slice_keys(
        step,
        TABLE,
        cursor,
        judge,
        lambda step, kind, key, payload: step.send(f"topic-{kind}", key, orjson.dumps(payload)),
        pass_name=WALK,
        max_keys=max_keys,
        budget_s=budget_s,
        max_events=max_events,
    )
    return step, done


def test_a_slice_starts_after_its_cursor_and_stops_at_its_key_limit(store: PartitionStore) -> None:
    step, done = walk(store, "a", max_keys=2)
    assert (done.last, done.exhausted, done.keys) == ("c", False, 2)
    assert done.events == {"even": 2, "odd": 2}
    sent = step.messages[("topic-even", 0)]
    assert [orjson.loads(v) for _, v in sent] == [{"key": "b"}, {"again": "b"}]


def test_the_last_slice_of_a_pass_is_exhausted(store: PartitionStore) -> None:
    _, done = walk(store, "c")
    assert (done.last, done.exhausted, done.keys) == ("e", True, 2)
    _, first = walk(store, "")
    assert (first.last, first.keys) == ("e", 5)


def test_the_event_limit_stops_before_the_next_key_not_within_one(store: PartitionStore) -> None:
    _, done = walk(store, "", max_events=3)
    # a (2 events), b (4 >= 3): both judged whole; the slice stops before c.
    assert (done.last, done.exhausted, done.keys) == ("b", False, 2)


def test_a_spent_budget_still_judges_one_key(store: PartitionStore) -> None:
    _, done = walk(store, "", budget_s=0.0)
    assert (done.last, done.exhausted, done.keys) == ("a", False, 1)


def test_an_account_whose_judgement_raises_is_skipped_with_its_writes_undone(
    store: PartitionStore, caplog: pytest.LogCaptureFixture
) -> None:
    step, done = walk(store, "", fails=frozenset({"c"}))
    assert (done.last, done.exhausted, done.skipped) == ("e", True, 1)
    assert done.events == {"odd": 4, "even": 4}
    written = step.state.updates()[OTHER]
    assert b"c" not in written and b"d" in written
    assert "account 'c' skipped by the test pass" in caplog.text
