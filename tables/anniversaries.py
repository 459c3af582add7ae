"""Anniversaries table: account id -> what is kept between its billing anniversaries.

Value: ``{"end": <end of the last closed period judged, epoch ms>, "reached": [metrics that
reached their limit in it], "underused": bool, "origin": <epoch ms> | null}`` (see
:class:`domain.moments.anniversary_pass.Held`). Written in the same step as the anniversary
event, so a period is announced at most once, across restarts and rebalances.
"""

from __future__ import annotations

import orjson

from domain.moments.anniversary_pass import Held
from domain.rules.anniversaries import Summary
from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

ANNIVERSARIES = TableSpec(
    "anniversaries", "Last billing anniversary per account: period end and its summary."
)


def decode_held(value: bytes | None) -> Held | None:
    """A :class:`Held` from its stored bytes (None for none)."""
    if value is None:
        return None
    data = orjson.loads(value)
    summary = Summary(int(data["end"]), frozenset(data["reached"]), bool(data["underused"]))
    origin = data.get("origin")
    return Held(summary, None if origin is None else int(origin))


def anniversary_of(view: Reader, account_id: str) -> Held | None:
    """What is held of ``account_id``'s last anniversary, or None."""
    return read(view, ANNIVERSARIES.name, account_id.encode(), decode_held)


def put_anniversary(state: StepState, account_id: str, held: Held) -> None:
    """Keep ``held`` for ``account_id``."""
    value = {
        "end": held.summary.end_ms,
        "reached": sorted(held.summary.reached),
        "underused": held.summary.underused,
        "origin": held.origin_ms,
    }
    state.put_object(ANNIVERSARIES.name, account_id.encode(), held, jsonbytes.dumps(value))


def forget_anniversary(state: StepState, account_id: str) -> None:
    """Forget ``account_id`` (a tombstone)."""
    state.delete(ANNIVERSARIES.name, account_id.encode())
