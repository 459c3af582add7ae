"""Custom firings table: account id -> when each rule of ``[[moments]]`` last fired for it.

Values are ``RuleFirings`` JSON (contract 3.8's cooldowns). Written in the same step (and Kafka
transaction) as the events it records, so a restart neither repeats nor loses one; the firings
of rules no longer in the catalog are dropped when an account's value is rewritten. A tombstone
on ``account-plans`` deletes it with the account (:mod:`tables.forget`).
"""

from __future__ import annotations

import orjson

from domain.rules.custom import RuleFirings
from state import jsonbytes
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

CUSTOM_FIRINGS = TableSpec(
    "custom-firings", "When each rule of [[moments]] last fired, per account (cooldowns)."
)


def decode_firings(held: bytes | None) -> RuleFirings:
    """A ``RuleFirings`` from its stored bytes (none for None)."""
    return RuleFirings.from_json(None if held is None else orjson.loads(held))


def firings_of(view: Reader, account_id: str) -> RuleFirings:
    """The rule firings held for ``account_id`` (none when nothing fired)."""
    return read(view, CUSTOM_FIRINGS.name, account_id.encode(), decode_firings)


def put_firings(state: StepState, account_id: str, firings: RuleFirings) -> None:
    """Store ``firings`` for ``account_id`` (deleting the key when none are left)."""
    value = jsonbytes.dumps(firings.to_json()) if firings.fired else None
    state.put_object(CUSTOM_FIRINGS.name, account_id.encode(), firings, value)
