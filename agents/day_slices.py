"""What the passes over a closed UTC day share (the drop evaluation, the ``at_most`` close):
a tick starts the pass of its day once, slices of keys finish it.

Each pass keeps its own :class:`~tables.evaluations.Evaluation` (day and cursor) per partition;
a slice judges the keys after the cursor and moves it, with its events, in one step.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from app.main import Runtime
from engine.background import Sent, slice_keys
from engine.step import Step
from state.transaction import StepState
from tables.evaluations import Evaluation

logger = logging.getLogger(__name__)


def tick_day(records: Sequence[Any], malformed: Callable[[Any], None] | None = None) -> int | None:
    """The newest ``day`` of the tick ``records``, None without one; ``malformed`` is told of
    each record that carries none."""
    days: list[int] = []
    for record in records:
        try:
            days.append(int(orjson.loads(record.value or b"")["day"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            if malformed is not None:
                malformed(record)
    return max(days) if days else None


def run_day_slice(
    step: Step,
    runtime: Runtime,
    held: Evaluation,
    *,
    table: str,
    judge: Callable[[str, bytes], Iterable[Sent]],
    put: Callable[[StepState, int, Evaluation], None],
    work: str,
    name: str,
    done_text: str,
    max_keys: int,
    budget_s: float,
) -> None:
    """One slice of the pass ``held`` over ``table``: judge the keys after its cursor, send
    their events, keep the cursor (none when the day is done), count on commit as ``work``."""
    started = time.perf_counter()
    done = slice_keys(
        step,
        table,
        held.cursor or "",
        judge,
        runtime.send_event,
        pass_name=f"{name} of day {held.day}",
        max_keys=max_keys,
        budget_s=budget_s,
    )
    put(step.state, step.partition, Evaluation(held.day, None if done.exhausted else done.last))
    logger.debug(
        "partition %d: %s slice of %d accounts in %.3fs",
        step.partition,
        work,
        done.keys,
        time.perf_counter() - started,
    )
    if done.exhausted:
        logger.info("partition %d: day %d %s", step.partition, held.day, done_text)
    step.on_commit(
        functools.partial(runtime.metrics.count_background, done.events, done.skipped, work)
    )
