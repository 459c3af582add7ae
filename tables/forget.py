"""Forgetting an account (a tombstone on ``account-plans``, contract 1.2).

Every table keyed by account id loses the account; the daily table keeps a marker with the
tombstone's time, so a plan record older than the deletion (a late replay) is not applied
after it. The marker expires with the daily retention, in the daily sweep.
"""

from __future__ import annotations

from domain.intake.daily import AccountDaily
from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import AccountTotals
from state.transaction import StepState
from tables.accounts import ACCOUNTS
from tables.anniversaries import forget_anniversary
from tables.announced import ANNOUNCED
from tables.birthdays import forget_birthday
from tables.custom_firings import CUSTOM_FIRINGS
from tables.daily import DAILY, daily_of, has_row, put_daily
from tables.lifetime import LIFETIME
from tables.totals import TOTALS


def forget_account(state: StepState, account_id: str, at_ms: int) -> None:
    """Delete everything held for ``account_id``; remember it was deleted at ``at_ms``."""
    key = account_id.encode()
    state.put_object(ACCOUNTS.name, key, None, None)
    state.put_object(TOTALS.name, key, AccountTotals(), None)
    state.delete(ANNOUNCED.name, key)
    forget_anniversary(state, account_id)
    forget_birthday(state, account_id)
    # Lifetime totals and announced milestones go too: a re-created account starts afresh.
    state.put_object(LIFETIME.name, key, AccountLifetime(), None)
    put_daily(state, account_id, AccountDaily.forgotten(at_ms))
    state.delete(CUSTOM_FIRINGS.name, key)  # a re-created account's rules start afresh


def forgotten_at(state: StepState, account_id: str) -> int | None:
    """When ``account_id`` was deleted, if a tombstone did so within the daily retention."""
    if (
        isinstance(state, StepState)
        and not state.known(DAILY.name, account_id.encode())
        and not has_row(state, account_id)
    ):
        return None  # no row: no marker (decoding nothing would build an empty one to say so)
    return daily_of(state, account_id).forgotten_at_ms
