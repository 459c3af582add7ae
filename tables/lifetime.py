"""Lifetime table: account id -> lifetime totals per metric and milestones announced per metric.

Values are ``AccountLifetime`` JSON (contract 3.4). Kept for as long as the account is: a
tombstone on ``account-plans`` deletes it (:mod:`tables.forget`), announced milestones included.
Written in the same step (and Kafka transaction) as the milestone events it records, so a
restart neither repeats nor loses one.
"""

from __future__ import annotations

import orjson

from domain.intake.lifetime import AccountLifetime
from state.table import TableSpec
from state.transaction import StepState
from tables import Reader, read

LIFETIME = TableSpec("lifetime", "Lifetime usage totals and announced milestones per account.")


def decode_lifetime(held: bytes | None) -> AccountLifetime:
    """An ``AccountLifetime`` from its stored bytes (empty for None)."""
    return AccountLifetime.from_json(None if held is None else orjson.loads(held))


def lifetime_of(view: Reader, account_id: str) -> AccountLifetime:
    """Lifetime totals and announced milestones held for ``account_id`` (empty when none)."""
    return read(view, LIFETIME.name, account_id.encode(), decode_lifetime)


def put_lifetime(state: StepState, account_id: str, lifetime: AccountLifetime) -> None:
    """Store ``lifetime`` for ``account_id`` (deleting the key when it holds nothing)."""
    value = None if lifetime.is_empty() else lifetime.encoded()
    state.put_object(LIFETIME.name, account_id.encode(), lifetime, value)
