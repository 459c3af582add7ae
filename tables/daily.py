"""Daily table: account id -> per-metric UTC daily totals and open drop episodes.

Values are ``AccountDaily`` JSON; days older than MOMENTS_DAILY_RETENTION_DAYS are
deleted. Its keys are also the list of accounts a drop evaluation walks.
"""

from __future__ import annotations

import orjson

from domain.intake.daily import AccountDaily
from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

DAILY = TableSpec("daily", "Daily usage totals and drop episodes per account.")


def daily_of(view: Reader, account_id: str) -> AccountDaily:
    """Daily totals and drop episodes held for ``account_id`` (empty when none)."""
    return read(view, DAILY.name, account_id.encode(), decode_daily)


def has_row(view: Reader, account_id: str) -> bool:
    """Whether the daily table has a row for ``account_id`` (its stored bytes, undecoded)."""
    return view.get(DAILY.name, account_id.encode()) is not None


def decode_daily(held: bytes | None) -> AccountDaily:
    """An ``AccountDaily`` from its stored bytes (empty for None)."""
    return AccountDaily.from_json(None if held is None else orjson.loads(held))


def put_daily(state: StepState, account_id: str, days: AccountDaily, *, keep: bool = False) -> None:
    """Store ``days`` for ``account_id``, deleting the key when nothing is left unless
    ``keep`` (the account still holds other state the daily sweep must come back for)."""
    key = account_id.encode()
    value = None if days.is_empty() and not keep else jsonbytes.dumps(days.to_json())
    state.put_object(DAILY.name, key, days, value)
