"""The worker's tables, declared on the project's store layer (:mod:`state`).

One table per module; each owns its encoding both ways and offers typed readers
(over anything with ``get(table, key)``: a step's :class:`~state.transaction.StepState`
or a :class:`~state.store.PartitionStore`) and writers (on a step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from state.transaction import StepState

T = TypeVar("T")


class Reader(Protocol):
    """What a table reader needs: a point lookup by table and key."""

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value of ``key`` in ``table``, or None."""
        ...


def read(view: Reader, table: str, key: bytes, decode: Callable[[bytes | None], T]) -> T:
    """``key`` of ``table`` decoded: through a step's object cache, or straight from a store."""
    if isinstance(view, StepState):
        return view.get_object(table, key, decode)
    return decode(view.get(table, key))
