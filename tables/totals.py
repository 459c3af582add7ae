"""Period-totals table: account id -> per-metric, per-period totals (``AccountTotals`` JSON).

One value per account so that a step writes each account once.
"""

from __future__ import annotations

import orjson

from domain.intake.usage import AccountTotals
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

TOTALS = TableSpec("period-totals", "Usage totals per account, metric and billing period.")


def decode_totals(held: bytes | None) -> AccountTotals:
    """An ``AccountTotals`` from its stored bytes (empty for None)."""
    return AccountTotals.from_json(None if held is None else orjson.loads(held))


def totals_of(view: Reader, account_id: str) -> AccountTotals:
    """Period totals held for ``account_id`` (empty when none)."""
    return read(view, TOTALS.name, account_id.encode(), decode_totals)


def has_totals(state: StepState, account_id: str) -> bool:
    """Whether ``account_id`` holds any period totals (``not totals_of(...).is_empty()``),
    without building an empty value (and caching it) when the table has no row."""
    key = account_id.encode()
    if not state.known(TOTALS.name, key) and state.get(TOTALS.name, key) is None:
        return False
    return not totals_of(state, account_id).is_empty()


def put_totals(state: StepState, account_id: str, totals: AccountTotals) -> None:
    """Store ``totals`` for ``account_id`` (deleting the key when nothing is left: no period,
    no carried gauge)."""
    value = None if totals.is_empty() else totals.encoded()
    state.put_object(TOTALS.name, account_id.encode(), totals, value)
