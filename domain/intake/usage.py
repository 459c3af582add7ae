"""Period values of one account: the state the usage path folds records into.

One :class:`AccountTotals` holds, per metric, the values of the few most recent
billing periods (the current one, plus the previous ones while late records may
still count). Keeping one value per account lets a batch touch each account's
state once, however many of its records the batch holds.

A metric's aggregation (contract 1.4) decides what its period cell holds: a sum of
quantities (``sum``; ``count`` and ``unique_count`` too, the caller folding 1 per
record, or per new distinct value), the highest quantity (``max``), or the reading
with the latest timestamp (``latest``, a gauge). A gauge carries: a period without a
reading of its own has the value of the latest earlier reading, kept across
:meth:`AccountTotals.prune` as the metric's *carry*.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import orjson

from domain.common.bounded import remember
from domain.common.slots import slot_setter
from domain.plans.catalog import Aggregation
from domain.plans.periods import Period, span_of_text, span_text

_ZERO = Decimal(0)
# What a period cell reads as while it does not exist: a zero of its own, so that
# :meth:`AccountTotals.undo` tells "no cell" (delete it) from "a cell holding 0" (put the 0
# back) by identity, at no cost to :meth:`AccountTotals.add`. Never stored in a cell: every
# value stored is the result of an addition (a new object) or a caller's quantity.
_ABSENT = Decimal(0)

#: The top-level JSON key of the carried gauge readings (metric names cannot start with ``@``).
CARRY_KEY = "@carry"

_KEYS_MAX: Final = 4_096
_key_texts: dict[str, str] = {}


def key_text(name: str) -> str:
    """``name`` printed as a JSON object key with its colon, as orjson prints it (``"name":``):
    the start of a member of a value printed by parts (:meth:`AccountTotals.encoded`)."""
    text = _key_texts.get(name)
    if text is None:
        text = remember(_key_texts, name, orjson.dumps(name).decode() + ":", _KEYS_MAX)
    return text


Reading = tuple[int, Decimal]
"""A gauge reading: ``(ts_ms, value)``."""


@dataclass(frozen=True, slots=True)
class Change:
    """A period value before and after one record was folded in."""

    metric: str
    period: Period
    before: Decimal
    after: Decimal


@dataclass(frozen=True, slots=True)
class ReadingChange(Change):
    """The :class:`Change` of a ``latest`` fold; ``before`` and ``after`` are period values,
    the carried value included. ``replaced`` is the period's own reading before the fold
    (``None``: it had none), what :meth:`AccountTotals.undo` puts back."""

    replaced: Reading | None


@dataclass(slots=True)
class AccountTotals:
    """Per-metric, per-period usage values of one account.

    ``periods[metric][(start_ms, end_ms)]`` is the value of that metric in the period under
    its aggregation: the sum of accepted quantities whose timestamps fall in the period
    (``sum``, and ``count`` and ``unique_count``, fed 1s), their maximum (``max``), or the
    quantity of the period's latest reading (``latest``). For a ``latest`` metric
    ``stamps[metric]`` holds the timestamp of each period's reading (same keys), and
    ``carry[metric]`` the latest reading of the periods already pruned.

    ``periods`` and ``stamps`` change only through the methods (which keep
    :meth:`encoded`'s printed metrics in step); ``carry`` may be set from outside.
    """

    periods: dict[str, dict[tuple[int, int], Decimal]] = field(default_factory=dict)
    stamps: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)
    carry: dict[str, Reading] = field(default_factory=dict)
    # metric -> its member of :meth:`encoded` (``"metric":{...}``), kept from one write to the
    # next: every change to a metric's cells drops it, so a write prints only the metrics
    # changed since the last one (a step touches one or two of an account's). Not stored.
    _printed: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(
        self, metric: str, period: Period, quantity: Decimal, into: Change | None = None
    ) -> Change:
        """Add ``quantity`` to the total of ``metric`` in ``period`` (``sum``, and ``count``
        and ``unique_count`` with a quantity of 1).

        The change is written into ``into`` when given: a fresh, empty object of a subclass
        (the intake's :class:`domain.intake.batch.Accepted`), so a record makes one object,
        not two."""
        by_period = self.periods.get(metric)
        if by_period is None:
            by_period = self.periods[metric] = {}
        key = period.span
        before = by_period.get(key, _ABSENT)
        after = before + quantity
        by_period[key] = after
        self._printed.pop(metric, None)
        # Change(metric, period, before, after), by its slot setters (see domain.common.slots).
        change: Change = _new(Change) if into is None else into
        _set_metric(change, metric)
        _set_period(change, period)
        _set_before(change, before)
        _set_after(change, after)
        return change

    def fold(
        self, metric: str, aggregation: Aggregation, period: Period, quantity: Decimal, ts_ms: int
    ) -> Change:
        """Fold one record of ``metric`` (timestamp ``ts_ms`` in ``period``) under
        ``aggregation``: ``sum``, ``count`` and ``unique_count`` add ``quantity`` (the caller
        passes 1 for a count, and for a distinct count only when the value is new in the
        period); ``max`` keeps the highest; ``latest`` keeps the reading with the greatest
        timestamp, a tie going to this one (read last). A metric whose cells were folded
        under another aggregation (the catalog changed it) starts over (which :meth:`undo`
        does not take back)."""
        if aggregation == "latest":
            return self._fold_latest(metric, period, quantity, ts_ms)
        if metric in self.stamps or metric in self.carry:
            self._forget(metric)
        if aggregation != "max":
            return self.add(metric, period, quantity)
        by_period = self.periods.get(metric)
        if by_period is None:
            by_period = self.periods[metric] = {}
        key = period.span
        before = by_period.get(key, _ABSENT)
        after = quantity if before is _ABSENT or quantity > before else before
        by_period[key] = after
        self._printed.pop(metric, None)
        return Change(metric, period, before, after)

    def _fold_latest(
        self, metric: str, period: Period, quantity: Decimal, ts_ms: int
    ) -> ReadingChange:
        stamps = self.stamps.get(metric)
        if stamps is None:
            if metric in self.periods:
                self._forget(metric)
            stamps = self.stamps[metric] = {}
            self.periods[metric] = {}
        by_period = self.periods[metric]
        key = period.span
        held_ms = stamps.get(key)
        if held_ms is None:
            replaced = None
            before = self._carried(metric, period.end_ms) or _ZERO
        else:
            before = by_period[key]
            replaced = (held_ms, before)
        after = before
        if held_ms is None or ts_ms >= held_ms:
            by_period[key] = after = quantity
            stamps[key] = ts_ms
            self._printed.pop(metric, None)
        return ReadingChange(metric, period, before, after, replaced)

    def keep_gauges(self, latest: AbstractSet[str]) -> None:
        """Drop the readings of metrics no longer ``latest`` (the catalog changed their
        aggregation): their cells start over, as :meth:`fold` starts over on other changes.

        For the callers that fold sums by :meth:`add` (which pays no test per record for this):
        called once per account and batch, when the account holds readings."""
        for metric in [m for m in (*self.stamps, *self.carry) if m not in latest]:
            self._forget(metric)

    def _forget(self, metric: str) -> None:
        """Drop every cell of ``metric`` (its aggregation changed: the values mean another
        thing now)."""
        self.periods.pop(metric, None)
        self.stamps.pop(metric, None)
        self.carry.pop(metric, None)
        self._printed.pop(metric, None)

    def undo(self, change: Change) -> None:
        """Take back ``change``, the latest :meth:`add` or :meth:`fold` (a record refused
        after all): the state is as before it, exactly."""
        key = change.period.span
        metric = change.metric
        self._printed.pop(metric, None)
        if isinstance(change, ReadingChange):
            replaced = change.replaced
            stamps = self.stamps[metric]
            if replaced is not None:
                stamps[key], self.periods[metric][key] = replaced
                return
            del stamps[key]
        elif change.before is not _ABSENT:
            self.periods[metric][key] = change.before
            return
        by_period = self.periods[metric]
        del by_period[key]  # nothing was held before: leave no cell behind
        if not by_period:
            del self.periods[metric]
            self.stamps.pop(metric, None)

    def total(self, metric: str, period: Period) -> Decimal:
        """Value of ``metric`` in ``period`` (zero when nothing was counted); for a
        ``latest`` metric without a reading in ``period``, the latest earlier reading."""
        value = self.periods.get(metric, {}).get(period.span)
        if value is not None:
            return value
        if metric in self.stamps or metric in self.carry:
            return self._carried(metric, period.end_ms) or _ZERO
        return _ZERO

    def _carried(self, metric: str, before_ms: int) -> Decimal | None:
        """The value of the latest reading of ``metric`` with a timestamp before ``before_ms``
        (``None`` when there is none), the carry included."""
        best = self.carry.get(metric)
        by_period = self.periods.get(metric, {})
        for key, ts_ms in self.stamps.get(metric, {}).items():
            if ts_ms < before_ms and (best is None or ts_ms > best[0]):
                best = (ts_ms, by_period[key])
        if best is None or best[0] >= before_ms:
            return None
        return best[1]

    def period_values(self, period: Period) -> dict[str, Decimal]:
        """Every metric with a value in ``period``: counted in it, or a gauge read before its
        end (carried)."""
        key = period.span
        values = {
            metric: by_period[key] for metric, by_period in self.periods.items() if key in by_period
        }
        for metric in (*self.stamps, *self.carry):
            if metric not in values:
                value = self._carried(metric, period.end_ms)
                if value is not None:
                    values[metric] = value
        return values

    def is_empty(self) -> bool:
        """Nothing held, no carried reading either: the account's row can go."""
        return not self.periods and not self.carry

    def prune(self, keep_end_after_ms: int) -> bool:
        """Forget periods that ended at or before ``keep_end_after_ms``; True if any went. A
        ``latest`` metric keeps its latest reading of those as its carry."""
        if _all_open(self.periods, keep_end_after_ms):  # the usual case, checked cheaply
            return False
        changed = False
        for metric in list(self.periods):
            by_period = self.periods[metric]
            old = [k for k in by_period if k[1] <= keep_end_after_ms]
            stamps = self.stamps.get(metric)
            if stamps is not None and old:
                self._keep_carry(metric, max((stamps.pop(k), by_period[k]) for k in old))
            if old:
                self._printed.pop(metric, None)
            for key in old:
                del by_period[key]
                changed = True
            if not by_period:
                del self.periods[metric]
                self.stamps.pop(metric, None)
        return changed

    def _keep_carry(self, metric: str, reading: Reading) -> None:
        held = self.carry.get(metric)
        if held is None or reading[0] >= held[0]:
            self.carry[metric] = reading

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the table (decimals as strings, so nothing is rounded): a
        ``latest`` cell is ``[ts_ms, "value"]``, the carried readings sit under
        :data:`CARRY_KEY`."""
        data: dict[str, Any] = {
            metric: {span_text(span): str(total) for span, total in by_period.items()}
            for metric, by_period in self.periods.items()
        }
        if self.stamps or self.carry:  # gauges: once per account, not per metric
            for metric, stamps in self.stamps.items():
                data[metric] = {
                    span_text(span): [stamps[span], str(value)]
                    for span, value in self.periods[metric].items()
                }
            if self.carry:
                data[CARRY_KEY] = {
                    m: [ts_ms, str(value)] for m, (ts_ms, value) in self.carry.items()
                }
        return data

    def encoded(self) -> bytes:
        """The stored form: exactly the bytes of :meth:`to_json` encoded by orjson
        (:func:`state.jsonbytes.dumps`), printed by parts. A metric's member is printed only
        when its cells changed since the last call; the carried readings, rare, every time."""
        printed = self._printed
        parts = []
        for metric, by_period in self.periods.items():
            part = printed.get(metric)
            if part is None:
                part = printed[metric] = self._print(metric, by_period)
            parts.append(part)
        if self.carry:
            carried = ",".join(
                [f'{key_text(m)}[{ts_ms},"{value!s}"]' for m, (ts_ms, value) in self.carry.items()]
            )
            parts.append(f"{_CARRY_TEXT}{{{carried}}}")
        return f"{{{','.join(parts)}}}".encode()

    def _print(self, metric: str, by_period: dict[tuple[int, int], Decimal]) -> str:
        """``metric``'s member of :meth:`encoded`. Span texts and decimals print as JSON
        strings with nothing to escape (digits, ``:``, ``.``, ``-``, ``+``, ``E``, letters of
        ``NaN`` and ``Infinity``); an int's ``str`` is its JSON."""
        stamps = self.stamps.get(metric)
        if stamps is None:
            cells = ",".join([f'"{span_text(s)}":"{total!s}"' for s, total in by_period.items()])
        else:
            cells = ",".join(
                [f'"{span_text(s)}":[{stamps[s]},"{value!s}"]' for s, value in by_period.items()]
            )
        return f"{key_text(metric)}{{{cells}}}"

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AccountTotals:
        """Inverse of :meth:`to_json`; ``None`` gives empty totals."""
        totals = cls({}, {}, {})
        if data:
            periods = totals.periods
            for metric, by_period in data.items():
                try:
                    periods[metric] = {
                        span_of_text(span): Decimal(total) for span, total in by_period.items()
                    }
                except (TypeError, ValueError):  # not a sum's cells: a gauge's, or the carry
                    totals._read_readings(metric, by_period)
        return totals

    def _read_readings(self, metric: str, data: dict[str, Any]) -> None:
        """Read the ``[ts_ms, "value"]`` cells of a ``latest`` metric, or the carry."""
        if metric == CARRY_KEY:
            self.carry = {m: (int(ts_ms), Decimal(value)) for m, (ts_ms, value) in data.items()}
            return
        stamps = self.stamps[metric] = {}
        by_period = self.periods[metric] = {}
        for span, (ts_ms, value) in data.items():
            key = span_of_text(span)
            stamps[key] = int(ts_ms)
            by_period[key] = Decimal(value)


def _all_open(periods: dict[str, dict[tuple[int, int], Decimal]], keep_end_after_ms: int) -> bool:
    """Whether every metric holds periods, all ending after ``keep_end_after_ms``."""
    for by_period in periods.values():
        if not by_period:
            return False
        for _, end in by_period:
            if end <= keep_end_after_ms:
                return False
    return True


_CARRY_TEXT: Final = key_text(CARRY_KEY)
_new = object.__new__
_set_metric = slot_setter(Change, "metric")
_set_period = slot_setter(Change, "period")
_set_before = slot_setter(Change, "before")
_set_after = slot_setter(Change, "after")
