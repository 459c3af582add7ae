"""The kinds of moment (contract 3): event ``kind`` values and topic suffixes."""

from __future__ import annotations

from typing import Final, Literal, get_args

from domain.plans.catalog import Catalog

Kind = Literal[
    "threshold-near",
    "threshold-hit",
    "sudden-drop",
    "usage-recovered",
    "milestone",
    "billing-anniversary",
    "account-change",
    "birthday",
]
"""Every kind of moment, in the contract's order."""

KINDS: Final[tuple[Kind, ...]] = get_args(Kind)


def event_kinds(catalog: Catalog) -> tuple[str, ...]:
    """Every kind a worker with ``catalog`` emits: :data:`KINDS`, then ``custom.<rule id>``
    for each rule of its ``[[moments]]`` (contract 3.8), in catalog order."""
    return (*KINDS, *(rule.kind for rule in catalog.moments))
