"""Evaluations table: ``p<partition>`` -> the drop evaluation of that partition.

Value: ``{"day": <epoch day>, "cursor": <last account done> | null}``; ``cursor``
null means the day is fully evaluated. Written in the same step as the drop events
of each slice, so an evaluation resumes where it stopped after a crash or a
rebalance and no account of a day is evaluated twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader

EVALUATIONS = TableSpec("evaluations", "Drop evaluation progress (day and cursor) per partition.")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Progress of a partition's evaluation of ``day``: done when ``cursor`` is None."""

    day: int
    cursor: str | None

    @property
    def done(self) -> bool:
        """Every account of the partition has been evaluated for ``day``."""
        return self.cursor is None


def _key(partition: int) -> bytes:
    return f"p{partition}".encode()


def evaluation_of(view: Reader, partition: int) -> Evaluation | None:
    """The partition's latest evaluation, or None when it never evaluated a day."""
    held = view.get(EVALUATIONS.name, _key(partition))
    if held is None:
        return None
    data = orjson.loads(held)
    if isinstance(data, int):  # written by versions before evaluation slices: done
        return Evaluation(data, None)
    return Evaluation(int(data["day"]), data.get("cursor"))


def put_evaluation(state: StepState, partition: int, evaluation: Evaluation) -> None:
    """Record the partition's evaluation progress."""
    value = {"day": evaluation.day, "cursor": evaluation.cursor}
    state.put(EVALUATIONS.name, _key(partition), jsonbytes.dumps(value))
