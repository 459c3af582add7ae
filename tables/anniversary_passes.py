"""Anniversary passes table: ``p<partition>`` -> the partition's timer pass.

Value: ``{"cut": <epoch ms>, "at": <epoch ms>, "cursor": <last key done> | null, "done": <cut of
the last complete pass> | null, "indexed": bool}``; ``cursor`` null means the pass at ``cut`` is
complete (then ``done`` equals ``cut``). Written in the same step as each slice's events, so a
pass resumes where it stopped. ``done`` also tells the usage path which closed periods it may
forget: those ending at or before it have been announced.

``indexed`` says that the due index (:mod:`tables.due`) holds a timer for every account: a
pass is then driven by the index (``cursor`` is a due key, the pass visits anniversaries due at
``cut`` and birthdays due at ``at``; ``rerun``, when set, says a timer due in the pass was
scheduled behind its cursor). Until then (a new store, or one written by a version
without the index) a pass visits every account of the accounts table (``cursor`` is an account
id) and writes each one's timers; that pass completing sets ``indexed``, and ``period`` to the
catalog's period length the timers were computed for: under another one (the operator changed
``period``) the index is not used, and the next pass is a full one again. Stores of older
versions hold no ``at``, ``indexed`` nor ``period``: read as ``cut``, false and unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader

ANNIVERSARY_PASSES = TableSpec(
    "anniversary-passes", "Billing anniversary pass progress (cut and cursor) per partition."
)


@dataclass(frozen=True, slots=True)
class Pass:
    """Progress of a partition's pass at ``cut``: complete when ``cursor`` is None."""

    cut_ms: int
    cursor: str | None
    done_ms: int | None
    #: The due index holds every account's timers (see the module's doc).
    indexed: bool = False
    #: Birthdays due at or before this are visited (the tick's time; ``cut_ms`` when unset).
    at_ms: int | None = None
    #: A timer due in this pass was scheduled behind its cursor: one more round once it ends.
    rerun: bool = False
    #: The catalog period the index was built for (None: unknown, built by an older version).
    period: str | None = None

    def indexed_for(self, period: str) -> bool:
        """The due index holds every account's timers under the catalog period ``period``."""
        return self.indexed and self.period == period

    @property
    def birthdays_until_ms(self) -> int:
        """Birthdays due at or before this are visited by the pass."""
        return self.cut_ms if self.at_ms is None else self.at_ms

    @property
    def complete(self) -> bool:
        """Every account of the partition has been judged at ``cut_ms``."""
        return self.cursor is None


def _key(partition: int) -> bytes:
    return f"p{partition}".encode()


def pass_of(view: Reader, partition: int) -> Pass | None:
    """The partition's latest pass, or None when it never started one."""
    held = view.get(ANNIVERSARY_PASSES.name, _key(partition))
    if held is None:
        return None
    data = orjson.loads(held)
    done = data.get("done")
    at = data.get("at")
    return Pass(
        int(data["cut"]),
        data.get("cursor"),
        None if done is None else int(done),
        bool(data.get("indexed", False)),
        None if at is None else int(at),
        bool(data.get("rerun", False)),
        data.get("period"),
    )


def put_pass(state: StepState, partition: int, progress: Pass) -> None:
    """Record the partition's pass progress."""
    value = {
        "cut": progress.cut_ms,
        "at": progress.at_ms,
        "cursor": progress.cursor,
        "done": progress.done_ms,
        "indexed": progress.indexed,
        **({"rerun": True} if progress.rerun else {}),
        **({} if progress.period is None else {"period": progress.period}),
    }
    state.put(ANNIVERSARY_PASSES.name, _key(partition), jsonbytes.dumps(value))


#: Before any instant a period can have (years 1..9999): "keep every closed period".
_KEEP_ALL: Final = -(2**62)


def keep_closed_after(view: Reader, partition: int) -> int:
    """Closed periods ending after this instant wait for their anniversary, so their totals
    must be kept: the cut of the partition's last complete pass, since every closed period
    ending at or before it has had its anniversary (before any pass completed: all of them)."""
    progress = pass_of(view, partition)
    if progress is None or progress.done_ms is None:
        return _KEEP_ALL
    return progress.done_ms
