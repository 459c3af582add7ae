"""The usage path for one batch of one partition: validate, dedup, classify, total.

Pure: state comes in through lookup functions and goes out as a result the agent
writes back, so a batch reads and writes each account's state once however many
of its records it holds, and the rules can be tested without Kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Protocol

from domain.common.numbers import exact_in_json
from domain.common.slots import slot_setter
from domain.common.timeutil import to_rfc3339
from domain.errors import InvalidUsageRecord, StructuredCloudEvent
from domain.intake.accounts import AccountPlan, period_of
from domain.intake.cloudevents import MeteredEvent, is_cloudevent, parse_cloudevent
from domain.intake.daily import AccountDaily
from domain.intake.deadletter import DeadLetter, dead_letter
from domain.intake.distinct import day_expiry, day_scope, distinct_key, period_expiry, period_scope
from domain.intake.lifetime import AccountLifetime, MilestoneDue
from domain.intake.partitioning import account_partition
from domain.intake.records import Metering, UsageRecord, parse_usage
from domain.intake.usage import AccountTotals, Change
from domain.plans.catalog import Aggregation, Catalog
from domain.plans.periods import Period, day_start_ms, utc_day


class Raw(Protocol):
    """A usage record as it came off Kafka.

    aiokafka's ``ConsumerRecord`` has these attributes, so the worker hands its records
    to the intake as they are, uncopied (a copy each cost ~5 % of a worker's CPU; see
    docs/benchmark.md).
    """

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """The record's Kafka timestamp (ms): when it was produced, or appended."""
        ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]:
        """The record's Kafka headers (a binary-mode CloudEvent's attributes; contract 1.4)."""
        ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A :class:`Raw` record built by hand (tests, the profile script)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def arrived_ms(self) -> int:
        """The record's timestamp: when it arrived, as far as the rules know."""
        return self.timestamp


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """The settings the intake obeys (milliseconds throughout)."""

    max_clock_skew_ms: int
    dedup_horizon_ms: int
    late_grace_ms: int
    daily_retention_days: int = 35
    #: Partitions of the co-partitioned inputs: a record keyed by its account but found on
    #: another partition than murmur2 gives the account is forwarded, not judged (contract
    #: 1.2). ``None``: placement is not checked (the rules alone, in tests).
    partitions: int | None = None


@dataclass(frozen=True, slots=True)
class IntakeState:
    """The step's state as the intake reads it: lookups by account (``seen_at`` by dedup key).

    Each lookup runs at most once per key and batch; the objects it returns are folded in
    place and come back in the :class:`IntakeResult` for the caller to write.
    """

    plan_of: Callable[[str], AccountPlan | None]
    totals_of: Callable[[str], AccountTotals]
    seen_at: Callable[[str], int | None]
    #: With it, every counted record also goes into its UTC day (sudden-drop detection).
    daily_of: Callable[[str], AccountDaily] | None = None
    #: With it, every counted record also goes into its metric's lifetime total (milestones).
    lifetime_of: Callable[[str], AccountLifetime] | None = None
    #: Periods ending after this instant are kept although closed: their billing anniversary
    #: is not announced yet (contract 3.5; see :mod:`agents.anniversaries`).
    keep_closed_after_ms: int | None = None
    #: ``unique_count`` metrics: of these distinct keys
    #: (:func:`domain.intake.distinct.distinct_key`), the ones already counted; one call per
    #: batch (a multi-get) with every key the batch needs.
    distinct_held: Callable[[Sequence[str]], set[str]] | None = None
    #: With it, the first-seen times of a batch's dedup keys (the ones held; each key once)
    #: are read by one call, a multi-get, instead of one ``seen_at`` per key.
    seen_many: Callable[[Sequence[str]], Mapping[str, int]] | None = None


@dataclass(frozen=True, slots=True)
class Accepted(Change):
    """A record that changed a period total, with what it changed (for detection).

    It is its own :class:`Change` (``metric``, ``period``, ``before``, ``after``): one object
    per accepted record instead of two, as every object made per record costs its allocation
    and the garbage collector's walks over it while the batch lives.
    """

    record: UsageRecord
    raw: Raw
    plan: AccountPlan | None

    @property
    def change(self) -> Change:
        """The change the record made to its period's value (this object)."""
        return self

    @classmethod
    def of(
        cls, record: UsageRecord, raw: Raw, plan: AccountPlan | None, change: Change
    ) -> Accepted:
        """The accepted ``record`` that made ``change``."""
        return cls(change.metric, change.period, change.before, change.after, record, raw, plan)


@dataclass(slots=True)
class IntakeResult:
    """What one batch decided: counts, dead letters, re-keyed records and new state."""

    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: list[tuple[Raw, DeadLetter]] = field(default_factory=list)
    rekey: list[tuple[str, Raw]] = field(default_factory=list)
    #: Records keyed by their account but on another partition than its own (placed by a
    #: partitioner other than murmur2): forwarded there like re-keyed ones.
    misplaced: list[tuple[str, Raw]] = field(default_factory=list)
    totals: dict[str, AccountTotals] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    accepted: list[Accepted] = field(default_factory=list)
    daily: dict[str, AccountDaily] = field(default_factory=dict)
    lifetime: dict[str, AccountLifetime] = field(default_factory=dict)
    milestones_due: list[MilestoneDue] = field(default_factory=list)
    #: Distinct values newly counted: distinct key -> when it expires (epoch ms;
    #: :func:`domain.intake.distinct.period_expiry`, :func:`~domain.intake.distinct.day_expiry`).
    distinct: dict[str, int] = field(default_factory=dict)
    #: Readings of ``late`` records folded into the daily state (not accepted), each with the
    #: number of accepted items before it: the rolling windows of ``[[moments]]`` replay
    #: them in their place (:func:`domain.moments.custom.detect_custom`).
    late_daily: list[tuple[int, UsageRecord]] = field(default_factory=list)


def dedup_key(account_id: str, record_id: str) -> str:
    """Dedup-table key: account first, so a repeat lands on its account's partition.

    ``<length of account_id>:<account_id>\x1f<record_id>``: the length makes the key
    unambiguous whatever the ids hold (both may contain ``\x1f`` or ``:``), so records of two
    accounts can never share a key.
    """
    return f"{len(account_id)}:{account_id}\x1f{record_id}"


def run_intake(
    batch: Iterable[Raw],
    state: IntakeState,
    *,
    now_ms: int,
    rules: IntakeRules,
    catalog: Catalog,
) -> IntakeResult:
    """Fold ``batch`` into ``state``; every record ends under exactly one outcome.

    Outcomes: ``invalid`` (dead-lettered), ``duplicate`` (record_id, or a CloudEvent's
    source and id, seen within the horizon), ``late`` (its period ended more than the grace
    ago), ``unknown_account`` (counted in calendar months until a plan arrives),
    ``unmetered`` (a CloudEvent no meter takes) or ``accepted``. A CloudEvent is one record:
    one outcome, whatever number of meters it feeds (its readings, each folded under its
    metric's aggregation, or none if one would make a total inexact). A record whose
    Kafka key is not its account id is not judged here: it is re-keyed, so it is
    counted when it comes back on its account's partition; so is a record keyed right but
    found on another partition than its account's (``misplaced``, with ``rules.partitions``).

    With ``state.daily_of``, every counted record (accepted, unknown account or late) also
    goes into its UTC day's total while that day is kept. A period that no longer accepts
    records is forgotten, unless it ends after ``state.keep_closed_after_ms``. With
    ``state.lifetime_of``, every counted record also goes into its metric's lifetime total
    (contract 3.4; a record that would make it inexact is refused like one that would make
    the period total so), and a record of an active account with a known plan whose lifetime
    total reaches a milestone not yet announced is listed in ``milestones_due``.
    """
    plan_of, totals_of = state.plan_of, state.totals_of
    daily_of, lifetime_of = state.daily_of, state.lifetime_of
    result = IntakeResult()
    outcomes = result.outcomes
    dead_letters = result.dead_letters
    rekey = result.rekey
    misplaced = result.misplaced
    partitions = rules.partitions
    # Account -> the partition it was found right on in this batch (a batch is one
    # partition's): the hash is looked up once per account and batch, not once per record.
    placed_right: dict[str, int] = {}
    seen = result.seen
    all_totals = result.totals
    all_daily = result.daily
    accepted = result.accepted
    late_daily = result.late_daily
    all_lifetime = result.lifetime
    milestones_due = result.milestones_due
    milestones = dict(catalog.milestones)  # a plain dict: cheaper lookups per record
    metering = Metering.of(catalog)
    # The metrics not folded as sums (contract 1.4): empty for a catalog of sums, so the test
    # per record is one truth test. ``count`` folds as a sum: its records parse to a 1.
    folded: dict[str, Aggregation] = {
        metric: aggregation
        for metric, aggregation in catalog.aggregations.items()
        if aggregation not in ("sum", "count")
    }
    # The gauges: an account's readings of other metrics (their aggregation changed since they
    # were folded) are dropped when its totals are read, before a sum is added to them.
    gauges = frozenset(metric for metric, aggregation in folded.items() if aggregation == "latest")

    def account_totals(account: str) -> AccountTotals:
        totals = all_totals[account] = totals_of(account)
        if totals.stamps or totals.carry:
            totals.keep_gauges(gauges)
        return totals

    distinct = _Distinct(state.distinct_held, result.distinct, rules)
    plans: dict[str, AccountPlan | None] = {}
    # The period of each account's last record: its next record nearly always falls in it,
    # and the account's plan (so its periods) is fixed for the batch.
    last_period: dict[str, Period] = {}
    max_skew_ms = rules.max_clock_skew_ms
    horizon_ms = rules.dedup_horizon_ms
    late_before_ms = now_ms - rules.late_grace_ms
    oldest_day = utc_day(now_ms) - rules.daily_retention_days + 1
    oldest_daily_ms = day_start_ms(oldest_day)

    def refuse(raw: Raw, reason: str | InvalidUsageRecord) -> None:
        outcomes["invalid"] += 1
        letter = dead_letter(reason, raw.topic, raw.partition, raw.offset, raw.value, now_ms)
        dead_letters.append((raw, letter))

    # Two passes. The first parses every record and sets aside the ones judged elsewhere
    # (re-keyed, misplaced); the dedup keys of the rest are then looked up at once (one
    # multi-get in the worker instead of one get per record), and the second pass judges and
    # folds them in their order, refusals included, so dead letters keep their order.
    # Three lists, not a list of tuples: a tuple per record would live for the whole batch,
    # one more object per record for the garbage collector to walk: its passes cost in
    # proportion to the objects allocated and still alive, and take a large share of the
    # intake's CPU.
    key_prefixes: dict[str, str] = {}
    raws: list[Raw] = []
    parsed: list[UsageRecord | MeteredEvent | InvalidUsageRecord] = []
    keys: list[str] = []
    for raw in batch:
        headers = raw.headers
        # A plain record is parsed and judged as it is; a CloudEvent (contract 1.4) is judged
        # as one record (its key, placement, idempotency key, period) and folded as the
        # readings its meters take from it.
        found: UsageRecord | MeteredEvent | InvalidUsageRecord
        try:
            if headers and is_cloudevent(headers):
                found = parse_cloudevent(raw.value, headers, catalog, now_ms, max_skew_ms)
            else:
                found = parse_usage(raw.value, now_ms, max_skew_ms, metering)
        except InvalidUsageRecord as exc:
            found = _structured(exc, raw, catalog, now_ms, max_skew_ms)
            if isinstance(found, InvalidUsageRecord):
                found = _without_frames(found)
        if type(found) is UsageRecord:
            account = found.account_id
            # dedup_key(account, record_id), its account part made once per account and batch.
            prefix = key_prefixes.get(account)
            if prefix is None:
                prefix = key_prefixes[account] = dedup_key(account, "")
            key = prefix + found.record_id
        elif isinstance(found, MeteredEvent) and found.readings:
            account = found.account_id
            key = found.dedup_id
        else:  # refused, or unmetered: no key, no placement (outcome in the second pass)
            raws.append(raw)
            parsed.append(found)
            keys.append("")
            continue
        if raw.key is None or raw.key != account.encode():
            rekey.append((account, raw))
            continue
        if partitions is not None and placed_right.get(account) != raw.partition:
            if account_partition(account, partitions) != raw.partition:
                misplaced.append((account, raw))
                continue
            placed_right[account] = raw.partition
        raws.append(raw)
        parsed.append(found)
        keys.append(key)
    held_at = _held_at(state, dict.fromkeys(key for key in keys if key))

    for raw, found, key in zip(raws, parsed, keys, strict=True):
        event: MeteredEvent | None = None
        if isinstance(found, UsageRecord):
            record = found
            account = record.account_id
            timestamp_ms = record.timestamp_ms
            readings: tuple[UsageRecord, ...] = (record,)
        elif isinstance(found, MeteredEvent):
            event = found
            readings = event.readings
            if not readings:  # no meter takes it: counted, otherwise ignored
                outcomes["unmetered"] += 1
                continue
            account = event.account_id
            timestamp_ms = event.timestamp_ms
        else:
            refuse(raw, found)
            continue
        first_seen = seen.get(key)
        if first_seen is None:
            first_seen = held_at.get(key)
        if first_seen is not None and now_ms - first_seen < horizon_ms:
            outcomes["duplicate"] += 1
            continue
        plan = plans.get(account, _UNREAD)
        if plan is _UNREAD:
            plan = plans[account] = plan_of(account)
        period = last_period.get(account)
        if period is None or not period.start_ms <= timestamp_ms < period.end_ms:
            period = last_period[account] = period_of(plan, timestamp_ms, catalog)
        late = period.end_ms < late_before_ms
        if event is not None and len(readings) > 1:
            # An event feeds all its meters or none: refused whole if one reading would make
            # a total inexact, before any is folded (a single reading is checked as it folds).
            refusal = _inexact_reading(
                readings,
                None if late else all_totals.get(account) or account_totals(account),
                period,
                None if lifetime_of is None else all_lifetime.get(account) or lifetime_of(account),
                folded,
            )
            if refusal is not None:
                refuse(raw, refusal)
                continue
        refused = False
        for record in readings:
            aggregation = folded.get(record.metric) if folded else None
            if not late:
                totals = all_totals.get(account)
                if totals is None:
                    totals = account_totals(account)
                if aggregation is None:
                    change = totals.add(record.metric, period, record.quantity, _new(Accepted))
                    after = change.after
                    if not exact_in_json(after) or after - change.before != record.quantity:
                        # Contract 4: a total no event could carry exactly is refused, not
                        # retried. (The second test catches a sum the 28-digit context
                        # rounded: 1e25 + 0.001.)
                        totals.undo(change)
                        dead_letters.append(
                            (raw, _inexact_total(raw, record, period, change, now_ms))
                        )
                        refused = True
                        break
                else:
                    # max and latest keep a quantity parse_usage checked; a distinct count
                    # grows by 1 only for a value new in the period. Neither can be inexact.
                    change = distinct.fold_period(totals, record, aggregation, period)
            if aggregation is not None:
                pass  # max, latest and unique_count have no lifetime total (contract 1.4)
            elif lifetime_of is not None:
                lifetime = all_lifetime.get(account)
                if lifetime is None:
                    lifetime = all_lifetime[account] = lifetime_of(account)
                lifetime_total = lifetime.add(record.metric, record.quantity)
                if lifetime_total is None:
                    # The same rule for the lifetime total: refused, and the period fold undone.
                    if not late:
                        all_totals[account].undo(change)
                    dead_letters.append((raw, _inexact_lifetime(raw, record, lifetime, now_ms)))
                    refused = True
                    break
                marks = milestones.get(record.metric)
                if (
                    marks is not None
                    and plan is not None
                    and plan.status == "active"
                    and lifetime.due(record.metric, marks, lifetime_total)
                    and catalog.plan(plan.plan_id) is not None
                ):
                    lifetime.listed(record.metric, marks, lifetime_total)
                    milestones_due.append(
                        MilestoneDue(
                            record,
                            raw.timestamp,
                            plan,
                            lifetime_total,
                            None if late else period,
                            None if late else change.after,
                        )
                    )
            if daily_of is not None and timestamp_ms >= oldest_daily_ms:
                daily = all_daily.get(account)
                if daily is None:
                    daily = all_daily[account] = daily_of(account)
                if aggregation is None:
                    daily.add(record.metric, timestamp_ms, record.quantity)
                else:
                    distinct.fold_day(daily, record, aggregation)
                if late:
                    late_daily.append((len(accepted), record))
            if late:
                continue
            # Accepted.of(record, raw, plan, change), by its slot setters (see
            # domain.common.slots): a sum's fold wrote its change into an Accepted already.
            item = change if type(change) is Accepted else _accepted_of(change)
            _set_record(item, record)
            _set_raw(item, raw)
            _set_plan(item, plan)
            accepted.append(item)
        if refused:
            outcomes["invalid"] += 1
            continue
        seen[key] = now_ms
        if late:
            outcomes["late"] += 1
        else:
            outcomes["accepted" if plan is not None else "unknown_account"] += 1
    _prune(result, now_ms - rules.late_grace_ms - 1, state.keep_closed_after_ms, oldest_day)
    return result


_ONE: Final = Decimal(1)
# A plan not looked up yet in this batch (None means "looked up: no plan").
_UNREAD: Final[Any] = object()


class _Distinct:
    """Folds of the metrics that are not sums, for one batch: ``max`` and ``latest`` as the
    state classes do, ``unique_count`` by whether the record's value is new in its period
    (its day), looked up in the distinct table and in the keys this batch counted."""

    __slots__ = ("_held_of", "_new", "_held", "_grace_ms", "_retention_days")

    def __init__(
        self,
        held_of: Callable[[Sequence[str]], set[str]] | None,
        new: dict[str, int],
        rules: IntakeRules,
    ) -> None:
        self._held_of = held_of
        self._new = new
        self._held: set[str] = set()
        self._grace_ms = rules.late_grace_ms
        self._retention_days = rules.daily_retention_days

    def _counted(self, key: str) -> bool:
        if key in self._new or key in self._held:
            return True
        held_of = self._held_of
        if held_of is not None and held_of((key,)):
            self._held.add(key)
            return True
        return False

    def fold_period(
        self, totals: AccountTotals, record: UsageRecord, aggregation: Aggregation, period: Period
    ) -> Change:
        """Fold ``record`` into its period's value (``change.after``: the value after it)."""
        metric = record.metric
        if aggregation != "unique_count":
            return totals.fold(metric, aggregation, period, record.quantity, record.timestamp_ms)
        key = distinct_key(record.account_id, metric, period_scope(period), _unique(record))
        if self._counted(key):
            value = totals.total(metric, period)
            return Change(metric, period, value, value)
        self._new[key] = period_expiry(period, self._grace_ms)
        return totals.fold(metric, aggregation, period, _ONE, record.timestamp_ms)

    def fold_day(self, daily: AccountDaily, record: UsageRecord, aggregation: Aggregation) -> None:
        """Fold ``record`` into its UTC day's value."""
        metric, ts_ms = record.metric, record.timestamp_ms
        if aggregation != "unique_count":
            daily.fold(metric, aggregation, ts_ms, record.quantity)
            return
        day = utc_day(ts_ms)
        key = distinct_key(record.account_id, metric, day_scope(day), _unique(record))
        if not self._counted(key):
            self._new[key] = day_expiry(day, self._retention_days)
            daily.fold(metric, aggregation, ts_ms, _ONE)


def _structured(
    exc: InvalidUsageRecord, raw: Raw, catalog: Catalog, now_ms: int, max_skew_ms: int
) -> MeteredEvent | InvalidUsageRecord:
    """What a record ``parse_usage`` refused is: a structured CloudEvent it found (parsed
    from the object it already read), else the refusal itself."""
    if not isinstance(exc, StructuredCloudEvent):
        return exc
    try:
        return parse_cloudevent(raw.value, raw.headers, catalog, now_ms, max_skew_ms, exc.event)
    except InvalidUsageRecord as refusal:
        return refusal


def _without_frames(exc: InvalidUsageRecord) -> InvalidUsageRecord:
    """``exc`` (and the exceptions it was raised from) without their tracebacks.

    A refusal lives on in ``parsed`` until its dead letter is made; its traceback held the
    frame of :func:`run_intake` (directly, or through the frames it links back to), whose
    locals hold ``parsed``: a reference cycle, so a whole batch's objects (every record,
    change and result) waited for the cyclic collector instead of being freed when the
    batch ended. Its dead letter reads only its message.
    """
    error: BaseException | None = exc
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    return exc


def _held_at(state: IntakeState, keys: dict[str, None]) -> Mapping[str, int]:
    """The first-seen times of the dedup ``keys`` held (absent ones left out): one
    ``state.seen_many`` call, else ``state.seen_at`` per key."""
    if state.seen_many is not None:
        return state.seen_many(list(keys))
    seen_at = state.seen_at
    held: dict[str, int] = {}
    for key in keys:
        first_seen = seen_at(key)
        if first_seen is not None:
            held[key] = first_seen
    return held


def _inexact_reading(
    readings: tuple[UsageRecord, ...],
    totals: AccountTotals | None,
    period: Period,
    lifetime: AccountLifetime | None,
    folded: dict[str, Aggregation],
) -> str | None:
    """Why an event's sum and count readings, folded one after the other as the intake folds
    them, would make a period or lifetime total that events cannot carry exactly (contract 4),
    or ``None`` when they would not.

    Readings of one metric add up (two meters may feed it): each is checked against the total
    the readings before it make, by the very tests the fold applies (adding their quantities
    first would round: 0.001 + 1e25 is 1e25 in 28 digits, a total 1e25 + 0.001 is not).
    """
    period_totals: dict[str, Decimal] = {}
    lifetime_totals: dict[str, Decimal] = {}
    for record in readings:
        metric, quantity = record.metric, record.quantity
        if metric in folded:
            continue
        if totals is not None:
            total = period_totals.get(metric)
            if total is None:
                total = totals.total(metric, period)
            after = total + quantity
            if not exact_in_json(after) or after - total != quantity:
                return (
                    f"{metric}: the event's readings would make the total of {metric} in the "
                    f"period from {to_rfc3339(period.start_ms)} {after}, which events cannot "
                    "carry exactly (see domain/common/numbers.py)"
                )
            period_totals[metric] = after
        if lifetime is not None:
            held = lifetime_totals.get(metric)
            lifetime_after = lifetime.exact_after(metric, quantity, held)
            if lifetime_after is None:
                base = lifetime.total(metric) if held is None else held
                return (
                    f"{metric}: the event's readings would make the lifetime total of {metric} "
                    f"{base + quantity}, which events cannot carry exactly "
                    "(see domain/common/numbers.py)"
                )
            lifetime_totals[metric] = lifetime_after
    return None


def _unique(record: UsageRecord) -> str:
    """The distinct value of a ``unique_count`` record (parse_usage refuses one without)."""
    unique = record.unique
    if unique is None:
        raise ValueError(f"a {record.metric} record reached the distinct count without a value")
    return unique


def _prune(result: IntakeResult, stale_ms: int, keep_after_ms: int | None, oldest_day: int) -> None:
    """Forget the periods that no longer accept records (late only *after* end + grace) and
    are not awaiting their anniversary, and the days past retention."""
    if keep_after_ms is not None:
        stale_ms = min(stale_ms, keep_after_ms)
    for totals in result.totals.values():
        totals.prune(stale_ms)
    for daily in result.daily.values():
        daily.prune(oldest_day)


def _inexact_total(
    raw: Raw, record: UsageRecord, period: Period, change: Change, now_ms: int
) -> DeadLetter:
    """The dead letter of a record that would make a period total no event carries exactly
    (contract 4: refused, not retried)."""
    reason = (
        f"quantity: {record.quantity} would make the total of {record.metric} in "
        f"the period from {to_rfc3339(period.start_ms)} {change.after}, which "
        f"events cannot carry exactly (see domain/common/numbers.py)"
    )
    return dead_letter(reason, raw.topic, raw.partition, raw.offset, raw.value, now_ms)


def _inexact_lifetime(
    raw: Raw, record: UsageRecord, lifetime: AccountLifetime, now_ms: int
) -> DeadLetter:
    """The dead letter of a record that would make a lifetime total inexact (the same rule)."""
    reason = (
        f"quantity: {record.quantity} would make the lifetime total of "
        f"{record.metric} {lifetime.total(record.metric) + record.quantity}, "
        f"which events cannot carry exactly (see domain/common/numbers.py)"
    )
    return dead_letter(reason, raw.topic, raw.partition, raw.offset, raw.value, now_ms)


_new = object.__new__
_set_record = slot_setter(Accepted, "record")
_set_raw = slot_setter(Accepted, "raw")
_set_plan = slot_setter(Accepted, "plan")


def _accepted_of(change: Change) -> Accepted:
    """An Accepted holding ``change`` (its record, raw and plan set by the caller)."""
    item: Accepted = _new(Accepted)
    _set_metric(item, change.metric)
    _set_period(item, change.period)
    _set_before(item, change.before)
    _set_after(item, change.after)
    return item


_set_metric = slot_setter(Change, "metric")
_set_period = slot_setter(Change, "period")
_set_before = slot_setter(Change, "before")
_set_after = slot_setter(Change, "after")
