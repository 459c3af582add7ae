"""Lifetime totals and announced milestones of one account (contract 3.4).

The lifetime total of (account, metric) is the sum of ``quantity`` over the distinct valid
records ever counted, late ones and those of an account whose plan was not known yet
included, whatever the plan or period. Only ``sum`` and ``count`` metrics have one (contract
1.4); for a ``count`` the intake adds 1 per record, so the total is the number of records.

One :class:`AccountLifetime` per account holds every metric's lifetime total and the
milestones already announced per metric, so a step reads and writes each account's lifetime
state once. The usage intake folds each record into it (one dict update) and lists the
records that may announce a milestone (:class:`MilestoneDue`);
:mod:`domain.moments.milestones` then decides and builds the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal, Inexact
from typing import Any, Final

from domain.common.numbers import exact_in_json
from domain.intake.accounts import AccountPlan
from domain.intake.records import UsageRecord
from domain.intake.usage import key_text
from domain.plans.catalog import Milestones
from domain.plans.periods import Period

_ZERO: Final = Decimal(0)

# Lifetime totals grow past what Decimal's default 28 digits hold exactly (1e25 + 0.001):
# a sum that would round raises instead, and the record is refused (contract 4). Its bound
# ``add`` costs what ``+`` does.
_exact_add = Context(prec=28, traps=[Inexact]).add


@dataclass(frozen=True, slots=True)
class MilestoneDue:
    """A counted record whose lifetime total reaches a milestone not yet announced.

    Listed by the intake only for accounts whose plan is known and active. ``period`` and
    ``period_total`` are the record's billing period and that period's total after it, or
    ``None`` for a late record (its period is over and no longer held).
    """

    record: UsageRecord
    arrived_ms: int
    plan: AccountPlan
    lifetime_total: Decimal
    period: Period | None
    period_total: Decimal | None


@dataclass(slots=True)
class AccountLifetime:
    """Lifetime totals per metric and the milestones announced per metric, of one account.

    ``announced[metric]`` is ascending. Milestones are compared exactly (Decimal), and each
    (account, metric, milestone) is announced at most once for as long as the account is
    kept (a tombstone forgets it, announced milestones included).

    ``totals`` and ``announced`` change only through the methods (which keep
    :meth:`encoded`'s printed parts in step).
    """

    totals: dict[str, Decimal] = field(default_factory=dict)
    announced: dict[str, tuple[Decimal, ...]] = field(default_factory=dict)
    # metric -> (the catalog entry, its lowest milestone not announced yet, or None when all
    # are): the per-record test of :meth:`due` is then one comparison. Not stored.
    _lowest: dict[str, tuple[Milestones, Decimal | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # What :meth:`encoded` printed, kept from one write to the next: per metric its member of
    # ``"totals"`` (``"metric":"total"``, dropped when the total changes), and the
    # ``"announced"`` member with its leading comma (``None``: printed afresh next time).
    # A write then prints only the totals added to since the last one. Not stored.
    _printed: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _printed_announced: str | None = field(default=None, init=False, repr=False, compare=False)

    def add(self, metric: str, quantity: Decimal) -> Decimal | None:
        """Add ``quantity`` to the lifetime total of ``metric`` and return the new total;
        ``None`` (and nothing changed) when the new total would not be exact in JSON
        (:func:`domain.common.numbers.exact_in_json`), or would need more than 28 digits."""
        totals = self.totals
        try:
            after = _exact_add(totals.get(metric, _ZERO), quantity)
        except Inexact:
            return None
        if not exact_in_json(after):
            return None
        totals[metric] = after
        self._printed.pop(metric, None)
        return after

    def exact_after(
        self, metric: str, quantity: Decimal, total: Decimal | None = None
    ) -> Decimal | None:
        """The total :meth:`add` of ``quantity`` would make, from ``total`` (default: the one
        held), or ``None`` when it would refuse it (nothing changes here)."""
        try:
            after = _exact_add(self.totals.get(metric, _ZERO) if total is None else total, quantity)
        except Inexact:
            return None
        return after if exact_in_json(after) else None

    def total(self, metric: str) -> Decimal:
        """Lifetime total of ``metric`` (zero when nothing was counted)."""
        return self.totals.get(metric, _ZERO)

    def _lowest_pending(self, metric: str, milestones: Milestones) -> Decimal | None:
        held = self._lowest.get(metric)
        if held is None or held[0] is not milestones:
            done = self.announced.get(metric, ())
            lowest = next((m for m in milestones.at if m not in done), None)
            held = self._lowest[metric] = (milestones, lowest)
        return held[1]

    def due(self, metric: str, milestones: Milestones, total: Decimal) -> bool:
        """Whether ``total`` reaches a milestone of ``milestones`` neither announced nor
        already :meth:`listed` (one comparison, the usual case)."""
        held = self._lowest.get(metric)  # inlined _lowest_pending: this runs per record
        lowest = (
            held[1]
            if held is not None and held[0] is milestones
            else self._lowest_pending(metric, milestones)
        )
        return lowest is not None and total >= lowest

    def listed(self, metric: str, milestones: Milestones, total: Decimal) -> None:
        """Note that a record at ``total`` was listed to announce what it reaches, so that
        later records of the batch are :meth:`due` only past it (else every record after a
        crossing would be listed until detection announces it). :meth:`announce` or
        :meth:`unlist` (a record that announced nothing after all) ends it."""
        done = self.announced.get(metric, ())
        above = next((m for m in milestones.at if m > total and m not in done), None)
        self._lowest[metric] = (milestones, above)

    def unlist(self, metric: str) -> None:
        """Forget what :meth:`listed` noted: :meth:`due` follows the announced milestones."""
        self._lowest.pop(metric, None)

    def announce(self, metric: str, milestones: Milestones, total: Decimal) -> tuple[Decimal, ...]:
        """Mark every milestone ``<= total`` not yet announced as announced; returns them,
        ascending (empty when there is none)."""
        done = self.announced.get(metric, ())
        new = tuple(m for m in milestones.at if m <= total and m not in done)
        if new:
            self.announced[metric] = tuple(sorted((*done, *new)))
            self._printed_announced = None
        self._lowest.pop(metric, None)
        return new

    def is_empty(self) -> bool:
        """Whether nothing is held (no total, no milestone announced)."""
        return not self.totals and not self.announced

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the table (decimals as strings, so nothing is rounded)."""
        data: dict[str, Any] = {"totals": {m: str(t) for m, t in self.totals.items()}}
        if self.announced:
            data["announced"] = {m: [str(v) for v in at] for m, at in self.announced.items()}
        return data

    def encoded(self) -> bytes:
        """The stored form: exactly the bytes of :meth:`to_json` encoded by orjson
        (:func:`state.jsonbytes.dumps`), printed by parts: only the totals changed since the
        last call are printed again (a decimal's ``str`` has nothing to escape in JSON)."""
        printed = self._printed
        parts = []
        for metric, total in self.totals.items():
            part = printed.get(metric)
            if part is None:
                part = printed[metric] = f'{key_text(metric)}"{total!s}"'
            parts.append(part)
        announced = ""
        if self.announced:
            announced = self._printed_announced or self._print_announced()
        return f'{{"totals":{{{",".join(parts)}}}{announced}}}'.encode()

    def _print_announced(self) -> str:
        members = ",".join(
            [
                key_text(m) + "[" + ",".join([f'"{v!s}"' for v in at]) + "]"
                for m, at in self.announced.items()
            ]
        )
        text = self._printed_announced = f',"announced":{{{members}}}'
        return text

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AccountLifetime:
        """Inverse of :meth:`to_json`; ``None`` gives an empty lifetime."""
        lifetime = cls()
        if data:
            lifetime.totals = {m: Decimal(t) for m, t in data.get("totals", {}).items()}
            lifetime.announced = {
                m: tuple(Decimal(v) for v in at) for m, at in data.get("announced", {}).items()
            }
        return lifetime
