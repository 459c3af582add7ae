"""The kinds of moment (contract 3): event ``kind`` values and topic suffixes."""

from __future__ import annotations

from typing import Final, Literal, get_args

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
