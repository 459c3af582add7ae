"""Daily totals and drop episodes of one account: the state sudden-drop detection reads.

The usage path adds every counted record to its UTC day (:class:`DailyTotals`, or
:class:`DailyReadings` for the ``max`` and ``latest`` aggregations); the drop rules
(:mod:`domain.rules.drops`) read the days and keep an :class:`Episode` beside them.

One value per account (all its metrics) so a batch touches each account once and a
day's evaluation reads each account once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from domain.common.timeutil import DAY_MS
from domain.plans.catalog import Aggregation
from domain.plans.periods import utc_day

_ZERO: Final = Decimal(0)


class DailyTotals:
    """Usage of one (account, metric) per UTC day, the state drop detection reads.

    ``days`` maps a UTC day number (:func:`domain.plans.periods.utc_day`) to the sum of quantities
    whose timestamps fall on that day; days with no usage are absent (they count as zero).

    ``first_day`` is the earliest day of any record ever added, a zero quantity included (a
    record of zero is still an observation of the account), and survives :meth:`prune`: it is
    where the account's history starts, which decides how old the account is and which
    baseline days count as observed. ``last_active_ms`` is the latest event time of a record
    with a positive quantity (``last_active_at`` in a drop event). Records may arrive out of
    order, so both are a minimum and a maximum, not the first and last seen.

    Totals read with :meth:`from_json` stay in their stored text form until ``days`` is read:
    the usage path adds to one or two days of a month-long history per batch, then writes it
    back, so it touches only those days instead of parsing and re-printing every one of them.
    The stored form is the one :meth:`to_json` writes (day numbers in ascending order, each
    total as ``str`` of its Decimal); additions and pruning work on it directly and give the
    same totals, and the same JSON, as on parsed days.
    """

    __slots__ = (
        "_days",
        "_text",
        "_text_shared",
        "_pending_day",
        "_pending_total",
        "first_day",
        "last_active_ms",
    )
    __match_args__ = ("days", "first_day", "last_active_ms")

    _days: dict[int, Decimal] | None
    _text: dict[str, str]
    _text_shared: bool
    _pending_day: int | None
    _pending_total: Decimal
    first_day: int | None
    last_active_ms: int | None

    def __init__(
        self,
        days: dict[int, Decimal] | None = None,
        first_day: int | None = None,
        last_active_ms: int | None = None,
    ) -> None:
        # Either _days holds the parsed days, or it is None and _text holds them as stored.
        self._days = {} if days is None else days
        self._text = {}
        # The text dict belongs to someone else too (the JSON it came from or went into): it is
        # copied before it is changed.
        self._text_shared = False
        # The day being added to in the stored form, and its total: written into _text (see
        # _flush) before anything reads it, so several records of a day print it once.
        self._pending_day = None
        self._pending_total = _ZERO
        self.first_day = first_day
        self.last_active_ms = last_active_ms

    @property
    def days(self) -> dict[int, Decimal]:
        """Usage per UTC day number (parsed from the stored form on first use)."""
        days = self._days
        if days is None:
            days = self._days = {int(day): Decimal(total) for day, total in self._flush().items()}
            self._text = {}
        return days

    @days.setter
    def days(self, days: dict[int, Decimal]) -> None:
        self._days = days
        self._text = {}
        self._pending_day = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DailyTotals) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.days, self.first_day, self.last_active_ms) == (
            other.days,
            other.first_day,
            other.last_active_ms,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        return (
            f"DailyTotals(days={self.days!r}, first_day={self.first_day!r}, "
            f"last_active_ms={self.last_active_ms!r})"
        )

    def add(self, ts_ms: int, quantity: Decimal) -> None:
        """Count ``quantity`` (finite, >= 0) on the UTC day of event time ``ts_ms``.

        A day older than the caller's retention is counted too; the next :meth:`prune` drops
        it again, and days older than :attr:`DropRules.lookback_days` are never read.
        """
        # Against a Decimal zero: a Decimal-to-int comparison costs twice as much (per record).
        if not quantity.is_finite() or quantity < _ZERO:
            raise ValueError(f"quantity must be a finite number >= 0, not {quantity}")
        day = ts_ms // DAY_MS  # utc_day, inlined: this runs for every counted record
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if quantity > _ZERO:
            days = self._days
            if days is None and day == self._pending_day:  # _add_to_text's usual case
                self._pending_total = self._pending_total + quantity
            elif days is not None or not self._add_to_text(day, quantity):
                days = self.days
                days[day] = days.get(day, _ZERO) + quantity
            if self.last_active_ms is None or ts_ms > self.last_active_ms:
                self.last_active_ms = ts_ms

    def _add_to_text(self, day: int, quantity: Decimal) -> bool:
        """Add ``quantity`` to ``day`` in the stored form; False (nothing done) when ``day`` is
        new and not after the last stored day, as appending it would break the order."""
        if day == self._pending_day:
            self._pending_total = self._pending_total + quantity
            return True
        text = self._flush()
        held = text.get(str(day))
        if held is None:
            if text and int(next(reversed(text))) >= day:
                return False
            total = _ZERO + quantity
        else:
            total = Decimal(held) + quantity
        self._pending_day = day
        self._pending_total = total
        return True

    def _flush(self) -> dict[str, str]:
        """The stored form, with the pending day's total written into it (at the end when the
        day is new: it was checked to come after every stored day, and nothing was added
        since)."""
        text = self._text
        day = self._pending_day
        if day is not None:
            if self._text_shared:
                text = self._text = dict(text)
                self._text_shared = False
            text[str(day)] = str(self._pending_total)
            self._pending_day = None
        return text

    def total(self, day: int) -> Decimal:
        """Usage on day number ``day`` (zero when nothing was counted)."""
        days = self._days
        if days is None:
            held = self._flush().get(str(day))
            return _ZERO if held is None else Decimal(held)
        return days.get(day, _ZERO)

    def copy(self) -> DailyTotals:
        """An independent copy: the stored days are shared until either side changes them
        (both copy them first), so a copy costs no parsing or printing."""
        copy = DailyTotals(None, self.first_day, self.last_active_ms)
        days = self._days
        if days is not None:
            copy._days = dict(days)
        else:
            copy._days = None
            copy._text = self._flush()
            copy._text_shared = self._text_shared = True
        return copy

    def totals_between(self, first_day: int, last_day: int) -> list[tuple[int, Decimal]]:
        """The days from ``first_day`` to ``last_day`` (both included) with usage, and their
        totals (unordered): the stored days are read without parsing the others."""
        days = self._days
        if days is not None:
            return [(day, total) for day, total in days.items() if first_day <= day <= last_day]
        found: list[tuple[int, Decimal]] = []
        for key, total in self._flush().items():
            day = int(key)
            if first_day <= day <= last_day:
                found.append((day, Decimal(total)))
        return found

    def has_days_before(self, day: int) -> bool:
        """Whether a day before ``day`` is kept (:meth:`prune` would change something)."""
        days = self._days
        if days is None:
            text = self._flush()
            return bool(text) and int(next(iter(text))) < day
        return any(kept < day for kept in days)

    def is_empty(self) -> bool:
        """No day with usage kept (``first_day`` and ``last_active_ms`` aside)."""
        days = self._days
        if days is None:
            return self._pending_day is None and not self._text
        return not days

    def prune(self, oldest_day_kept: int) -> bool:
        """Forget days before ``oldest_day_kept``; True if any went. ``first_day`` stays."""
        days = self._days
        if days is None:
            # Stored days ascend, so the old ones are at the front.
            text = self._flush()
            old_keys: list[str] = []
            for key in text:
                if int(key) >= oldest_day_kept:
                    break
                old_keys.append(key)
            if not old_keys:
                return False
            if self._text_shared:
                text = self._text = dict(text)
                self._text_shared = False
            for key in old_keys:
                del text[key]
            return True
        old = [day for day in days if day < oldest_day_kept]
        for day in old:
            del days[day]
        return bool(old)

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-ready form: ``{"f": first_day, "a": last_active_ms, "d": {day: total}}``.

        Day numbers become string keys and totals strings (nothing is rounded); absent or empty
        members are left out, so an account holding several metrics stays small.
        """
        data: dict[str, Any] = {}
        if self.first_day is not None:
            data["f"] = self.first_day
        if self.last_active_ms is not None:
            data["a"] = self.last_active_ms
        days = self._days
        if days is None:
            text = self._flush()
            if text:
                data["d"] = text
                self._text_shared = True
        elif days:
            # Printed once, then kept in the stored form: the next write of this value (the
            # usage path writes an account's days at every step it is touched) prints only
            # the days added since, as for totals read from the table.
            text = data["d"] = {str(day): str(total) for day, total in sorted(days.items())}
            self._days = None
            self._text = text
            self._text_shared = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DailyTotals:
        """Inverse of :meth:`to_json`; ``None`` gives empty totals."""
        data = data or {}
        text = data.get("d", {})
        totals = cls(None, data.get("f"), data.get("a"))
        if type(text) is dict:
            totals._days = None
            totals._text = text
            totals._text_shared = True
        else:  # not what to_json writes: parse it now, as strictly as ever
            totals._days = {int(day): Decimal(total) for day, total in text.items()}
        return totals


class NotASum(TypeError):
    """A sum was added to the daily readings of a ``max`` or ``latest`` metric."""


class DailyReadings:
    """The daily values of one (account, metric) whose aggregation is ``max`` or ``latest``,
    with the reading interface of :class:`DailyTotals` (:meth:`total`, :attr:`days`,
    ``first_day``, ``last_active_ms``, :meth:`is_empty`, :meth:`prune`, JSON).

    ``values`` maps a UTC day number to the day's value: its highest quantity (``max``), or
    the quantity of its reading with the latest timestamp (``latest``, a tie going to the
    reading folded last), whose timestamp ``stamps`` holds. A ``latest`` value carries: a
    day without a reading has the value of the latest earlier reading, the one kept as
    ``carry`` when :meth:`prune` dropped its day included. ``first_day`` and
    ``last_active_ms`` mean what they mean for :class:`DailyTotals`.
    """

    __slots__ = (
        "kind",
        "values",
        "stamps",
        "carry",
        "first_day",
        "last_active_ms",
        "_cells",
        "_cells_last",
        "_cells_shared",
    )
    __match_args__ = ("kind", "values", "stamps", "carry", "first_day", "last_active_ms")

    def __init__(
        self,
        kind: Literal["max", "latest"],
        values: dict[int, Decimal] | None = None,
        stamps: dict[int, int] | None = None,
        carry: tuple[int, Decimal] | None = None,
        first_day: int | None = None,
        last_active_ms: int | None = None,
    ) -> None:
        self.kind: Literal["max", "latest"] = kind
        self.values: dict[int, Decimal] = {} if values is None else values
        self.stamps: dict[int, int] = {} if stamps is None else stamps
        self.carry: tuple[int, Decimal] | None = carry
        self.first_day: int | None = first_day
        self.last_active_ms: int | None = last_active_ms
        # The days as :meth:`to_json` prints them (``"d"``: day text -> cell, ascending), kept
        # from one write to the next and changed cell by cell, so a write prints only the days
        # folded into since the last one; ``None`` until printed (or when a fold inserted a
        # day before the last one: printed afresh next time). ``_cells_last`` is its last day;
        # ``_cells_shared``: it went into a JSON value too, and is copied before it changes.
        # ``values`` and ``stamps`` change only through :meth:`fold` and :meth:`prune`.
        self._cells: dict[str, Any] | None = None
        self._cells_last = 0
        self._cells_shared = False

    def _key(self) -> tuple[Any, ...]:
        return (
            self.kind,
            self.values,
            self.stamps,
            self.carry,
            self.first_day,
            self.last_active_ms,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DailyReadings):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "DailyReadings({!r}, {!r}, {!r}, {!r}, {!r}, {!r})".format(*self._key())

    def copy(self) -> DailyReadings:
        """An independent copy (its days' dicts copied; values and stamps are immutable)."""
        return DailyReadings(
            self.kind,
            dict(self.values),
            dict(self.stamps),
            self.carry,
            self.first_day,
            self.last_active_ms,
        )

    def add(self, ts_ms: int, quantity: Decimal) -> None:
        """Not for readings: raises :class:`NotASum` (a sum's :meth:`AccountDaily.add` reached
        a metric that was ``max`` or ``latest``, and starts it over)."""
        raise NotASum(f"daily {self.kind} readings take no sum")

    def fold(self, ts_ms: int, quantity: Decimal) -> None:
        """Fold a reading of ``quantity`` (finite, >= 0) at event time ``ts_ms`` into its UTC
        day."""
        if not quantity.is_finite() or quantity < _ZERO:
            raise ValueError(f"quantity must be a finite number >= 0, not {quantity}")
        day = utc_day(ts_ms)
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if quantity > _ZERO and (self.last_active_ms is None or ts_ms > self.last_active_ms):
            self.last_active_ms = ts_ms
        values = self.values
        held = values.get(day)
        if self.kind == "max":
            if held is None or quantity > held:
                values[day] = quantity
                if self._cells is not None:
                    self._set_cell(day, held is None, str(quantity))
            return
        stamps = self.stamps
        if held is None or ts_ms >= stamps[day]:
            values[day] = quantity
            stamps[day] = ts_ms
            if self._cells is not None:
                self._set_cell(day, held is None, [ts_ms, str(quantity)])

    def _set_cell(self, day: int, new: bool, cell: Any) -> None:
        """Print ``day``'s new ``cell`` into the printed days (``new``: the day had none)."""
        if new and day < self._cells_last:  # would break the ascending order: print afresh
            self._cells = None
            return
        cells = self._cells
        if self._cells_shared:
            cells = self._cells = dict(cells or {})
            self._cells_shared = False
        assert cells is not None  # noqa: S101 - the caller checked
        cells[str(day)] = cell
        if new:
            self._cells_last = day

    @property
    def days(self) -> dict[int, Decimal]:
        """The value per day number, from the first day with a reading kept to the last; for
        ``latest`` the days between without a reading hold the carried value."""
        values = self.values
        if self.kind == "max" or not values:
            return dict(sorted(values.items()))
        first, last = min(values), max(values)
        return {day: self.total(day) for day in range(first, last + 1)}

    def total(self, day: int) -> Decimal:
        """The value on day number ``day``: zero without a reading, except for ``latest``,
        where it is the latest reading of the days before (carried)."""
        value = self.values.get(day)
        if value is not None:
            return value
        if self.kind == "max":
            return _ZERO
        # The latest earlier reading is the one of the latest earlier day (days are in time
        # order), unless the carry is later (a reading of a day pruned before it came).
        best = self.carry
        earlier = max((d for d in self.values if d < day), default=None)
        if earlier is not None and (best is None or self.stamps[earlier] > best[0]):
            best = (self.stamps[earlier], self.values[earlier])
        if best is None or utc_day(best[0]) > day:
            return _ZERO
        return best[1]

    def has_days_before(self, day: int) -> bool:
        """Whether a day before ``day`` is kept (:meth:`prune` would change something)."""
        cells = self._cells
        if cells is not None:  # printed in ascending order: the first is the oldest
            return bool(cells) and int(next(iter(cells))) < day
        return any(kept < day for kept in self.values)

    def is_empty(self) -> bool:
        """No day kept and no carried reading (``first_day`` and ``last_active_ms`` aside)."""
        return not self.values and self.carry is None

    def prune(self, oldest_day_kept: int) -> bool:
        """Forget days before ``oldest_day_kept``; True if any went. ``first_day`` stays, and
        for ``latest`` the latest reading of the days dropped becomes the carry."""
        if not self.has_days_before(oldest_day_kept):  # the usual case, without a walk
            return False
        values = self.values
        old = [day for day in values if day < oldest_day_kept]
        if self.kind == "latest":
            stamps = self.stamps
            latest = max((stamps.pop(day), values[day]) for day in old)
            if self.carry is None or latest[0] >= self.carry[0]:
                self.carry = latest
        for day in old:
            del values[day]
        cells = self._cells
        if cells is not None:
            if self._cells_shared:
                cells = self._cells = dict(cells)
                self._cells_shared = False
            for day in old:
                del cells[str(day)]
        return True

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-ready form, marked by its kind: ``{"k": "max", "f": first_day, "a":
        last_active_ms, "d": {day: "value"}}``, or for ``latest`` ``{"k": "latest", ..., "d":
        {day: [ts_ms, "value"]}, "c": [ts_ms, "value"]}`` (``"c"``: the carry). Absent or
        empty members are left out."""
        data: dict[str, Any] = {"k": self.kind}
        if self.first_day is not None:
            data["f"] = self.first_day
        if self.last_active_ms is not None:
            data["a"] = self.last_active_ms
        cells = self._cells
        if cells is None:
            values = sorted(self.values.items())
            if self.kind == "max":
                cells = {str(day): str(value) for day, value in values}
            else:
                stamps = self.stamps
                cells = {str(day): [stamps[day], str(value)] for day, value in values}
            self._cells = cells
            self._cells_last = values[-1][0] if values else 0
        if cells:
            data["d"] = cells
            self._cells_shared = True
        if self.carry is not None:
            data["c"] = [self.carry[0], str(self.carry[1])]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DailyReadings:
        """Inverse of :meth:`to_json`."""
        kind = data["k"]
        if kind not in ("max", "latest"):
            raise ValueError(f"unknown kind of daily readings: {kind!r}")
        readings = cls(kind, first_day=data.get("f"), last_active_ms=data.get("a"))
        held = data.get("d", {})
        if kind == "max":
            readings.values = {int(day): Decimal(value) for day, value in held.items()}
        else:
            readings.values = {int(day): Decimal(value) for day, (_, value) in held.items()}
            readings.stamps = {int(day): int(ts_ms) for day, (ts_ms, _) in held.items()}
        carry = data.get("c")
        if carry is not None:
            readings.carry = (int(carry[0]), Decimal(carry[1]))
        return readings


DailyHistory = DailyTotals | DailyReadings
"""The days of one (account, metric): totals (``sum``, ``count``, ``unique_count``) or
readings (``max``, ``latest``)."""


@dataclass(frozen=True, slots=True)
class Episode:
    """Whether a drop of one (account, metric) has been announced and not yet recovered.

    ``opened_day`` is the first recent day of the assessment that opened the episode (the day
    in the event's identity), ``None`` when closed. ``announced`` says whether the drop that
    opened it was sent as an event: episodes move for every account, but only those with a
    known, active plan get a sudden-drop, and only an announced drop gets a usage-recovered
    when the episode ends (contract 3.3: none without a preceding drop event).
    """

    open: bool = False
    opened_day: int | None = None
    announced: bool = True

    def __post_init__(self) -> None:
        if self.open != (self.opened_day is not None):
            raise ValueError("an open episode needs an opened_day, and a closed one has none")

    def to_json(self) -> int | dict[str, Any] | None:
        """JSON-ready form: the opened day (announced), ``{"day": d, "announced": false}``
        (a drop that was not sent), or ``None`` when closed. A bare day is what versions
        before recoveries wrote; those only kept announced drops of active accounts, the
        usual case, so it still means announced."""
        if self.opened_day is not None and not self.announced:
            return {"day": self.opened_day, "announced": False}
        return self.opened_day

    @classmethod
    def from_json(cls, data: int | dict[str, Any] | None) -> Episode:
        """Inverse of :meth:`to_json`."""
        if data is None:
            return CLOSED
        if isinstance(data, dict):
            return cls(True, int(data["day"]), bool(data.get("announced", True)))
        return cls(True, data)


CLOSED: Final = Episode()
"""The episode of an (account, metric) with no unrecovered drop."""


@dataclass(slots=True)
class AccountDaily:
    """Per-metric daily totals and open drop episodes of one account."""

    metrics: dict[str, DailyHistory] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    #: When billing deleted the account (its tombstone's time), while that is kept: a plan
    #: record older than it is stale (contract 1.2). Kept here because the daily sweep
    #: visits every key of this table, so the marker expires with the days around it.
    forgotten_at_ms: int | None = None
    #: Told ``(self, metric)`` before the days of ``metric`` change (added to, folded into,
    #: pruned): the rules of ``[[moments]]`` keep a metric's days as they were before a batch
    #: only when the batch changes them (:class:`domain.moments.custom.WindowSnapshots`).
    #: Not state: neither stored nor compared.
    watcher: Callable[[AccountDaily, str], None] | None = field(
        default=None, compare=False, repr=False
    )

    def add(self, metric: str, ts_ms: int, quantity: Decimal) -> None:
        """Count ``quantity`` in the UTC day of ``ts_ms`` (a ``sum`` metric)."""
        if self.watcher is not None:
            self.watcher(self, metric)
        daily = self.metrics.get(metric)
        if daily is None:
            daily = self.metrics[metric] = DailyTotals()
        try:  # (free unless raised: the sum path pays nothing for it)
            daily.add(ts_ms, quantity)
        except NotASum:  # the metric's days were readings: the catalog made it a sum since
            self.metrics[metric] = DailyTotals()
            self.metrics[metric].add(ts_ms, quantity)

    def fold(self, metric: str, aggregation: Aggregation, ts_ms: int, quantity: Decimal) -> None:
        """Fold a record of ``metric`` at ``ts_ms`` into its UTC day under ``aggregation``:
        ``sum``, ``count`` and ``unique_count`` add ``quantity`` (the caller passes 1 for a
        count, and for a distinct count only when the value is new that day); ``max`` and
        ``latest`` keep a reading (:class:`DailyReadings`). A metric whose days were kept
        under another aggregation (the catalog changed it) starts over."""
        if self.watcher is not None:
            self.watcher(self, metric)
        daily = self.metrics.get(metric)
        if aggregation == "max" or aggregation == "latest":
            if type(daily) is not DailyReadings or daily.kind != aggregation:
                daily = self.metrics[metric] = DailyReadings(aggregation)
            daily.fold(ts_ms, quantity)
            return
        if type(daily) is not DailyTotals:
            daily = self.metrics[metric] = DailyTotals()
        daily.add(ts_ms, quantity)

    def episode(self, metric: str) -> Episode:
        """The drop episode of ``metric`` (closed when none was ever opened)."""
        return self.episodes.get(metric, Episode())

    def set_episode(self, metric: str, episode: Episode) -> None:
        """Record the episode state after an evaluation."""
        if episode.open:
            self.episodes[metric] = episode
        else:
            self.episodes.pop(metric, None)

    def prune(self, oldest_day_kept: int) -> bool:
        """Delete days (and a deletion marker) before ``oldest_day_kept``; True if any went."""
        changed = False
        forgotten = self.forgotten_at_ms
        if forgotten is not None and utc_day(forgotten) < oldest_day_kept:
            self.forgotten_at_ms = None
            changed = True
        watcher = self.watcher
        for metric, daily in self.metrics.items():
            # A metric's prune changes something exactly when it keeps a day before the
            # oldest kept: asked once (cheaply), the usual answer being no.
            if daily.has_days_before(oldest_day_kept):
                if watcher is not None:
                    watcher(self, metric)
                daily.prune(oldest_day_kept)
                changed = True
        return changed

    def is_empty(self) -> bool:
        """No day kept and no open episode: the account can be forgotten."""
        return (
            not self.episodes
            and self.forgotten_at_ms is None
            and all(d.is_empty() for d in self.metrics.values())
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the daily table."""
        out: dict[str, Any] = {"m": {m: d.to_json() for m, d in self.metrics.items()}}
        if self.episodes:
            out["e"] = {m: e.to_json() for m, e in self.episodes.items()}
        if self.forgotten_at_ms is not None:
            out["f"] = self.forgotten_at_ms
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AccountDaily:
        """Inverse of :meth:`to_json`; ``None`` gives empty state."""
        if not data:
            return cls()
        return cls(
            metrics={
                # A mark of kind: readings (max, latest); else the days of a sum (as ever).
                m: DailyTotals.from_json(d) if "k" not in d else DailyReadings.from_json(d)
                for m, d in data.get("m", {}).items()
            },
            episodes={m: Episode.from_json(e) for m, e in data.get("e", {}).items()},
            forgotten_at_ms=data.get("f"),
        )

    @classmethod
    def forgotten(cls, at_ms: int) -> AccountDaily:
        """The state of an account billing deleted at ``at_ms``: nothing but the marker."""
        return cls(forgotten_at_ms=at_ms)
