"""Custom closes table: ``p<partition>`` -> the day close of the ``at_most`` rules there.

Value: ``{"day": <epoch day>, "cursor": <last account done> | null}``, as the drop
evaluations keep theirs (:mod:`tables.evaluations`); ``cursor`` null means the day is judged.
Written in the same step as the events of each slice, so a close resumes where it stopped
after a crash or a rebalance and no account is judged twice for a day.
"""

from __future__ import annotations

import orjson

from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader
from tables.evaluations import Evaluation

CUSTOM_CLOSES = TableSpec(
    "custom-closes", "Day close of the at_most rules of [[moments]] (day and cursor) per partition."
)


def _key(partition: int) -> bytes:
    return f"p{partition}".encode()


def close_of(view: Reader, partition: int) -> Evaluation | None:
    """The partition's latest day close, or None when it never closed a day."""
    held = view.get(CUSTOM_CLOSES.name, _key(partition))
    if held is None:
        return None
    data = orjson.loads(held)
    return Evaluation(int(data["day"]), data.get("cursor"))


def put_close(state: StepState, partition: int, close: Evaluation) -> None:
    """Record the partition's day-close progress."""
    value = {"day": close.day, "cursor": close.cursor}
    state.put(CUSTOM_CLOSES.name, _key(partition), jsonbytes.dumps(value))
