"""Due table: the partition's timers, accounts ordered by when something of theirs is due.

Key: ``<kind>|<due, epoch ms, 15 digits>|<account id>``, so RocksDB's key order is due order
within a kind and a pass seeks straight to what is due instead of visiting every account.
Kinds: ``a`` (billing anniversary: the end of a billing period; due once final, at a cut) and
``b`` (birthday: the start of the birthday's UTC day). Value: ``{}`` for an anniversary,
``{"day": "YYYY-MM-DD"}`` for a birthday (the day it celebrates, which stays the same when a
failing account's entry is moved later).

Entries are written in the same step as what scheduled them (a plan record, or the visit that
judged the previous one), so they commit with the events they lead to. A stale entry (a plan's
periods or birth date changed since it was written, the account deleted) is harmless: its visit
judges nothing and schedules what the plan asks now, or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

from state.store import PartitionStore
from state.table import TableSpec
from state.transaction import StepState

DUE = TableSpec("due", "Timers: accounts by due time (anniversaries, birthdays).")

DueKind = Literal["a", "b"]
ANNIVERSARY: Final[DueKind] = "a"
BIRTHDAY: Final[DueKind] = "b"

_WIDTH: Final = 15  # epoch ms up to year 33658
_NO_VALUE: Final = b"{}"


def due_key(kind: DueKind, due_ms: int, account_id: str) -> bytes:
    """The key of ``account_id``'s ``kind`` timer at ``due_ms`` (before 1970: at 0)."""
    return f"{kind}|{max(0, due_ms):0{_WIDTH}d}|{account_id}".encode()


def parse_key(key: bytes) -> tuple[DueKind, int, str]:
    """``(kind, due_ms, account_id)`` of a key of :func:`due_key`."""
    text = key.decode()
    kind = ANNIVERSARY if text[0] == ANNIVERSARY else BIRTHDAY
    return kind, int(text[2 : 2 + _WIDTH]), text[3 + _WIDTH :]


def put_due(state: StepState, key: bytes, value: bytes = _NO_VALUE) -> None:
    """Schedule the timer ``key`` (a repeat of a key already held changes nothing)."""
    state.put(DUE.name, key, value)


def drop_due(state: StepState, key: bytes) -> None:
    """Remove the timer ``key`` (visited)."""
    state.delete(DUE.name, key)


def _bound(kind: DueKind, until_ms: int) -> bytes:
    """A key after every ``kind`` key due at or before ``until_ms``."""
    return f"{kind}|{max(0, until_ms):0{_WIDTH}d}}}".encode()  # "}" sorts after "|"


def due_entries(
    store: PartitionStore, after: bytes, kind: DueKind, until_ms: int
) -> Iterator[tuple[bytes, bytes]]:
    """``kind``'s entries due at or before ``until_ms``, in key order, after the key ``after``
    (b"" for the first)."""
    prefix = f"{kind}|".encode()
    start = prefix if after < prefix else after + b"\x00"
    bound = _bound(kind, until_ms)
    for key, value in store.items(DUE.name, start):
        if key >= bound:
            return
        yield key, value


def first_due_ms(store: PartitionStore, kind: DueKind, from_ms: int = 0) -> int | None:
    """When ``kind``'s first timer due at or after ``from_ms`` is due (None: none).

    ``from_ms`` lets the caller seek past what a complete pass visited: its removals stay in
    RocksDB as tombstones until compaction, and a seek from the kind's start would step over
    each of them (a million after the 1st of the month), on every check."""
    prefix = f"{kind}|".encode()
    for key, _ in store.items(DUE.name, due_key(kind, from_ms, "")):
        return parse_key(key)[1] if key.startswith(prefix) else None
    return None
