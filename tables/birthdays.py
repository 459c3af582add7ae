"""Birthdays table: account id -> the last birthday celebrated (contract 3.7).

Value: ``{"day": "YYYY-MM-DD"}``. Written in the same step as the birthday event, so an
account is celebrated at most once a year, across restarts and rebalances.
"""

from __future__ import annotations

from datetime import date

import orjson

from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader

BIRTHDAYS = TableSpec("birthdays", "Last birthday celebrated per account.")


def celebrated_of(view: Reader, account_id: str) -> date | None:
    """The last birthday celebrated for ``account_id``, or None."""
    held = view.get(BIRTHDAYS.name, account_id.encode())
    return None if held is None else date.fromisoformat(orjson.loads(held)["day"])


def put_celebrated(state: StepState, account_id: str, day: date) -> None:
    """Remember that ``account_id``'s birthday of ``day`` was celebrated."""
    state.put(BIRTHDAYS.name, account_id.encode(), jsonbytes.dumps({"day": day.isoformat()}))


def forget_birthday(state: StepState, account_id: str) -> None:
    """Forget ``account_id`` (a tombstone)."""
    state.delete(BIRTHDAYS.name, account_id.encode())
