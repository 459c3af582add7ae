"""``moments simulate``'s traffic model: realistic plans and usage, with bad records on purpose.

Generation is pure and deterministic for a seed (:class:`Simulator`);
:func:`commands.simulate.publish.run_simulation` only paces it and publishes with aiokafka.
The traffic is shaped so that a newcomer sees the worker do something within minutes:

* every account gets a plan record first (mostly on the lower rungs, some with a billing anchor,
  a few with a per-account limit override);
* each account uses several metrics of the catalog at its own base pace (a fraction of its
  allotment per month), following a daily rhythm in its own time zone, with noise; each record
  of a metric the catalog aggregates otherwise (contract 1.4) reads as that aggregation means:
  a ``latest`` metric (seats) sends the account's current level, drifting by one now and then;
  a ``max`` metric (storage) sends readings of a level that grows slowly; a ``unique_count``
  metric (active users) sends one of the account's users in ``attributes``;
* a couple of *hot* accounts on the lowest plan burn about 30 % of their limit per minute of
  the hot metric, steadily, so they cross their near levels within minutes and hit the limit
  in a few; their levels also cross their limits within minutes: seats step up by one every
  :data:`HOT_STEP_MS`, storage grows by :data:`HOT_GROWTH_PER_MIN` of its limit a minute, and
  they have more users than their plan allows;
* now and then an account bursts for a few minutes at many times its usual pace;
* about one record in a hundred is re-sent with the same ``record_id`` (a producer retry);
* one record in ``--bad-every`` is invalid, rotating through :data:`BAD_KINDS`;
* the metrics of :data:`INTERACTIONS` (support calls, exports) are left out: only the showcase
  sends them;
* when the catalog has ``[[meters]]``, usage of a metered metric goes out as CloudEvents
  (contract 1.4) in both Kafka modes: every record of a metric fed by a meter with ``value``
  (``tokens`` from ``llm-completion`` events), and :data:`CLOUDEVENT_SHARE` of the one-unit
  records of a metric fed by a meter without one (``api_calls`` from ``api-request`` events);
* unless ``--no-showcase``, a few demo accounts (:mod:`commands.simulate.demo`) whose
  backfilled history and scheduled records trigger every kind of moment: their history goes
  out with the plans, before the paced usage, and the log line starting with
  :data:`~commands.simulate.publish.HISTORY_PUBLISHED` says it is in Kafka.

Quantities are scaled by the expected record rate of each (account, metric), so the usage per
minute does not depend on ``--rate``: a faster simulator sends more, smaller records.

Random draws come from separate streams seeded from ``seed``: accounts, bursts, the choice of
account and metric, bad records, and one stream per metric (its set-up and its records). So
a catalog with one more metric leaves the hot accounts' traffic as it was: a hot account
picks its hot metric at a fixed share (:data:`HOT_METRIC_SHARE`) and its hot records carry
the usage accrued since its previous one, with no draw at all.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.errors import InvalidUsageRecord
from domain.intake.cloudevents import SPECVERSION, parse_cloudevent
from domain.plans.catalog import Aggregation, Catalog, Meter, Plan

BadKind = Literal[
    "not-json", "missing-field", "negative-quantity", "future-timestamp", "bad-metric"
]
RecordKind = Literal["usage", "cloudevent", "duplicate", "bad"]

BAD_KINDS: Final[tuple[BadKind, ...]] = (
    "not-json",
    "missing-field",
    "negative-quantity",
    "future-timestamp",
    "bad-metric",
)
"""The kinds of invalid record the simulator sends, in the order it rotates through them."""

REQUIRED_FIELDS: Final = ("record_id", "account_id", "metric", "quantity", "timestamp")

MINUTE_MS: Final = 60_000
MINUTES_PER_MONTH: Final = 30 * 24 * 60

HOT_FRACTION_PER_MIN: Final = (0.28, 0.36)
"""Share of its limit a hot account uses per minute: crosses 50 % in under 2 min, 100 % in
~3-4."""
HOT_ACTIVITY: Final = 1.5
"""A hot account is at least this active (a busy account: it sends a record every few seconds
even at a low ``--rate``, so its records keep up with its pace)."""
HOT_METRIC_SHARE: Final = 0.45
"""Share of a hot account's records that are of the hot metric, whatever the catalog holds."""
HOT_STEP_MS: Final = 60_000
"""A hot account adds a seat (of a ``latest`` metric) this often, up to twice its limit."""
HOT_GROWTH_PER_MIN: Final = (0.08, 0.15)
"""Share of its limit a hot account's storage (a ``max`` metric) grows by per minute, from
60-80 % of it: past the limit in about 2-5 minutes."""
HOT_USERS: Final = 2.0
"""A hot account has this many times its plan's allowance of users (a ``unique_count``)."""
GROWTH_PER_MONTH: Final = (0.05, 0.3)
"""Share of its limit an account's storage (a ``max`` metric) grows by per month."""
DRIFT_EVERY_MS: Final = 10 * MINUTE_MS
"""Mean time between two steps (one unit up or down) of an account's ``latest`` level."""
READING_DIP: Final = 0.03
"""A ``max`` metric's reading is up to this share below the level (files come and go)."""

BURST_EVERY_MS: Final = 120_000
"""Mean time between two bursts over the whole fleet."""
BURST_LENGTH_MS: Final = (90_000, 300_000)
BURST_FRACTION_PER_MIN: Final = (0.05, 0.3)
"""Share of its limit a bursting account uses per minute of the burst."""
BURST_WEIGHT: Final = 4.0
"""A bursting account sends this many times more records than usual."""

DUPLICATE_RATE: Final = 0.01
LATE_RATE: Final = 0.005
"""Share of records whose timestamp is minutes old (telemetry that was held up)."""
RFC3339_RATE: Final = 0.15
"""Share of records with an RFC 3339 timestamp rather than epoch milliseconds."""
FUTURE_MS: Final = 30 * DAY_MS
"""How far ahead a ``future-timestamp`` bad record is: far beyond any sane clock skew."""
NOISE_SIGMA: Final = 0.35
CLOUDEVENT_SHARE: Final = 0.5
"""Share of one-unit records of a metric a counting meter feeds that go as CloudEvents."""
CLOUDEVENT_SOURCE: Final = "/moments-simulate"
STRUCTURED_HEADERS: Final[tuple[tuple[str, bytes], ...]] = (
    ("content-type", b"application/cloudevents+json"),
)
"""Kafka headers of a structured-mode CloudEvent."""


_TIME_ZONES_H: Final = (-8.0, -5.0, -3.0, 0.0, 1.0, 2.0, 5.5, 8.0, 9.0)
_REGIONS: Final = ("eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1")


@dataclass(frozen=True, slots=True)
class MetricProfile:
    """How one metric is used: its share of an account's records, whether quantities are whole
    numbers, and the range of base paces (fraction of the limit used per month). For a
    ``latest`` or ``max`` metric the range is that of the starting level (fraction of the
    limit), for a ``unique_count`` one that of the account's number of users."""

    share: float
    integral: bool
    monthly_fraction: tuple[float, float]


PROFILES: Final[dict[str, MetricProfile]] = {
    "api_calls": MetricProfile(0.55, True, (0.2, 1.1)),
    "events": MetricProfile(0.30, True, (0.2, 1.1)),
    "storage_gb": MetricProfile(0.10, False, (0.1, 0.8)),
    "seats": MetricProfile(0.05, True, (0.3, 1.0)),
    "active_users": MetricProfile(0.10, False, (0.3, 1.1)),
    "tokens": MetricProfile(0.10, True, (0.2, 0.9)),
}
DEFAULT_PROFILE: Final = MetricProfile(0.10, False, (0.2, 0.9))
INTERACTIONS: Final = frozenset({"support_calls", "exports"})
"""Metrics of the shipped catalog that count what a customer does now and then (a support call,
an export), not usage: the paced traffic leaves them out (unless the catalog has nothing else),
else every account would reach the example ``[[moments]]`` rules on them within minutes. The
showcase (:mod:`commands.simulate.demo`) sends them, for the accounts meant to fire the rules."""
DEFAULT_SCALE: Final = 10_000.0
"""Monthly scale of a metric that no plan limits (nothing to take a size from)."""


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One usage record ready to send: Kafka key, value and headers, and what the simulator
    meant by it."""

    key: bytes
    value: bytes
    kind: RecordKind
    bad_kind: BadKind | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class Burst:
    """An account using ``metric`` at ``per_min`` units a minute until ``until_ms``."""

    metric: str
    per_min: float
    until_ms: int


@dataclass(slots=True)
class Level:
    """The level behind an account's readings of a ``latest`` metric (a count of seats that
    steps by one now and then) or a ``max`` one (storage that grows ``per_min`` a minute)."""

    value: float
    per_min: float = 0.0
    since_ms: int | None = None
    """When a ``max`` level was last read: it has grown since."""
    next_ms: int | None = None
    """When a ``latest`` level steps next (at most one step a reading)."""
    base: float = 1.0
    """The level a ``latest`` level drifts around."""
    top: float = math.inf
    """A hot account's level climbs (seats) or grows (storage) up to this, twice its limit."""
    hot: bool = False


@dataclass(slots=True)
class Account:
    """A simulated account and its usage habits."""

    account_id: str
    plan: Plan
    activity: float
    tz_offset_h: float
    base_per_min: dict[str, float]
    hot: bool = False
    anchor_age_days: int | None = None
    limits: dict[str, float] = field(default_factory=dict)
    burst: Burst | None = None
    levels: dict[str, Level] = field(default_factory=dict)
    """Per ``latest`` or ``max`` metric: the level its readings report."""
    users: dict[str, int] = field(default_factory=dict)
    """Per ``unique_count`` metric: how many users the account has."""
    hot_since_ms: int | None = None
    hot_owed: float = 0.0
    """A hot account's usage of the hot metric accrued since its last record, not yet sent."""

    def limit(self, metric: str) -> float | None:
        """The account's allotment of ``metric`` (its override, else its plan's), or None."""
        override = self.limits.get(metric)
        if override is not None:
            return override
        limit = self.plan.limit(metric)
        return None if limit is None else float(limit)


@dataclass(slots=True)
class Stats:
    """What has been generated so far, by kind."""

    usage: int = 0
    duplicates: int = 0
    bad: int = 0
    cloudevents: int = 0

    @property
    def total(self) -> int:
        """Records generated."""
        return self.usage + self.duplicates + self.bad + self.cloudevents


def daily_rhythm(now_ms: int, tz_offset_h: float) -> float:
    """Activity multiplier of an account at ``now_ms``: lowest around 03:00 local time, highest
    around 15:00, and quieter at weekends (mean over a week is about 0.9)."""
    local_ms = now_ms + int(tz_offset_h * 3_600_000)
    hour = (local_ms % DAY_MS) / 3_600_000
    weekday = (local_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    day = 1.0 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24)
    return day * (0.6 if weekday >= 5 else 1.0)


class Simulator:
    """Deterministic generator of plan and usage records for a seed.

    ``rate`` (records per second) is the pace the caller will send at; it only scales the
    quantities, so that usage per minute is the same at any rate. ``run_id`` goes into every
    ``record_id``: give each run its own, or a restarted simulator's records would be taken for
    duplicates of the previous run's.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        accounts: int = 20,
        rate: float = 50.0,
        bad_every: int = 200,
        seed: int = 1,
        run_id: str = "sim",
    ) -> None:
        if accounts < 1:
            raise ValueError(f"accounts must be at least 1, got {accounts}")
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of records per second, got {rate}")
        if bad_every < 0:
            raise ValueError(f"bad_every must be 0 (no bad records) or more, got {bad_every}")
        self.catalog = catalog
        self.rate = rate
        self.bad_every = bad_every
        self.run_id = run_id
        self.stats = Stats()
        self._seed = seed
        self._rng = _stream(seed, "traffic")  # which account, which metric, duplicates
        self._burst_rng = _stream(seed, "bursts")
        self._bad_rng = _stream(seed, "bad")
        self._metrics = self._catalog_metrics(catalog)
        self._aggregation: dict[str, Aggregation] = {
            m: catalog.aggregation(m) for m in self._metrics
        }
        # Each metric's own stream: its set-up and its records draw nothing from the others'.
        self._streams = {m: _stream(seed, f"metric/{m}") for m in self._metrics}
        self._quantified = (
            tuple(m for m in self._metrics if self._aggregation[m] in ("sum", "max", "latest"))
            or self._metrics
        )
        self._scale = {m: self._metric_scale(catalog, m) for m in self._metrics}
        self._seq = 0
        self._start_ms: int | None = None
        self._last_ms: int | None = None
        self._recent: deque[SimRecord] = deque(maxlen=200)
        self.hot_metric = self._hot_metric(catalog, self._metrics)
        self.accounts = self._make_accounts(accounts)
        self._meters = sending_meters(catalog)

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _catalog_metrics(catalog: Catalog) -> tuple[str, ...]:
        metrics = list(catalog.units)
        for plan in catalog.plans:
            metrics += [m for m in plan.limits if m not in metrics]
        if not metrics:
            raise ValueError("the plan catalog names no metric: add a [metrics] table")
        usage = [m for m in metrics if m not in INTERACTIONS]
        return tuple(usage or metrics)

    @staticmethod
    def _metric_scale(catalog: Catalog, metric: str) -> float:
        limits = [float(lim) for p in catalog.plans if (lim := p.limit(metric)) is not None]
        return max(limits) if limits else DEFAULT_SCALE

    @staticmethod
    def _hot_metric(catalog: Catalog, metrics: Sequence[str]) -> str | None:
        """The sum the hot accounts burn through: ``api_calls`` when the lowest plan limits it,
        else the first sum it limits (levels and distinct counts have their own hot ways)."""
        lowest = catalog.plans[0]
        sums = [m for m in metrics if catalog.aggregation(m) == "sum"]
        if "api_calls" in sums and lowest.limit("api_calls") is not None:
            return "api_calls"
        return next((m for m in sums if lowest.limit(m) is not None), None)

    def _make_accounts(self, count: int) -> list[Account]:
        rng = _stream(self._seed, "accounts")
        plans = self.catalog.plans
        weights = [0.55**i for i in range(len(plans))]  # mostly the lower rungs
        hot_count = 0 if self.hot_metric is None else min(count, max(2, count // 25))
        hot = set(rng.sample(range(count), hot_count))
        accounts: list[Account] = []
        for index in range(count):
            is_hot = index in hot
            plan = plans[0] if is_hot else rng.choices(plans, weights)[0]
            account = Account(
                account_id=f"acct-{index + 1:04d}",
                plan=plan,
                activity=rng.lognormvariate(0.0, 0.8),
                tz_offset_h=rng.choice(_TIME_ZONES_H),
                base_per_min={},
                hot=is_hot,
            )
            if is_hot:
                account.activity = max(account.activity, HOT_ACTIVITY)
            if rng.random() < 0.3:
                account.anchor_age_days = rng.randint(1, 60)
            api_limit = plan.limit("api_calls")
            if not is_hot and api_limit is not None and rng.random() < 0.125:
                account.limits["api_calls"] = float(api_limit) * 1.5
            accounts.append(account)
        for metric in self._metrics:
            for account in accounts:
                self._set_up(account, metric, self._streams[metric])
        return accounts

    def _set_up(self, account: Account, metric: str, rng: random.Random) -> None:
        """The account's habits for ``metric``: its pace, and its level or users."""
        limit = account.limit(metric)
        scale = self._scale[metric] if limit is None else limit
        low, high = PROFILES.get(metric, DEFAULT_PROFILE).monthly_fraction
        fraction = rng.uniform(low, high)
        account.base_per_min[metric] = scale * fraction / MINUTES_PER_MONTH
        hot = account.hot and limit is not None
        aggregation = self._aggregation[metric]
        if aggregation == "latest":
            # Seats: a whole level around which it drifts; a hot account climbs past its limit.
            base = max(1.0, round(scale * fraction))
            start = max(1.0, math.ceil(scale * 0.7)) if hot else base
            top = 2 * scale if hot else math.inf
            account.levels[metric] = Level(start, base=base, top=top, hot=hot)
        elif aggregation == "max":
            # Storage: grows a little each month; a hot account's by minutes.
            if hot:
                start, per_min = (
                    scale * rng.uniform(0.6, 0.8),
                    scale * rng.uniform(*HOT_GROWTH_PER_MIN),
                )
            else:
                start, per_min = (
                    scale * fraction,
                    scale * rng.uniform(*GROWTH_PER_MONTH) / (MINUTES_PER_MONTH),
                )
            account.levels[metric] = Level(start, per_min, top=2 * scale if hot else math.inf)
        elif aggregation == "unique_count":
            users = scale * (HOT_USERS if hot else fraction)
            account.users[metric] = max(1, math.ceil(users) if hot else round(users))
        if hot and metric == self.hot_metric:
            # Steady, so the promise of "a threshold within minutes" holds.
            account.base_per_min[metric] = scale * rng.uniform(*HOT_FRACTION_PER_MIN)

    @property
    def hot_accounts(self) -> list[Account]:
        """Accounts that approach their limit within minutes."""
        return [a for a in self.accounts if a.hot]

    @property
    def hot_metrics(self) -> list[str]:
        """The metrics whose limits the hot accounts reach within minutes: the hot metric,
        then every level and distinct count the lowest plan limits."""
        lowest = self.catalog.plans[0]
        levels = [
            m
            for m in self._metrics
            if self._aggregation[m] in ("latest", "max", "unique_count")
            and lowest.limit(m) is not None
        ]
        return ([] if self.hot_metric is None else [self.hot_metric]) + levels

    # ------------------------------------------------------------------ plans

    def plans(self, now_ms: int) -> list[tuple[bytes, bytes]]:
        """One ``account-plans`` record per account, as (key, value), updated at ``now_ms``."""
        out: list[tuple[bytes, bytes]] = []
        for account in self.accounts:
            value: dict[str, Any] = {
                "account_id": account.account_id,
                "plan_id": account.plan.id,
                "status": "active",
                "updated_at": to_rfc3339(now_ms - now_ms % 1000),
            }
            if account.anchor_age_days is not None:
                day_start = now_ms - now_ms % DAY_MS
                value["billing_anchor"] = to_rfc3339(day_start - account.anchor_age_days * DAY_MS)
            if account.limits:
                value["limits"] = {m: _number(v, True) for m, v in account.limits.items()}
            out.append((account.account_id.encode(), orjson.dumps(value)))
        return out

    # ------------------------------------------------------------------ usage

    def next_records(self, n: int, now_ms: int) -> list[SimRecord]:
        """The next ``n`` usage records, sent at ``now_ms`` (epoch milliseconds)."""
        rng = self._rng
        if self._start_ms is None:
            self._start_ms = now_ms
        self._update_bursts(now_ms)
        accounts = self.accounts
        weights = [self._weight(a) for a in accounts]
        total_weight = sum(weights)
        mixes = [self._metric_mix(a) for a in accounts]
        cum_weights: list[float] = []
        running = 0.0
        for w in weights:
            running += w
            cum_weights.append(running)

        records: list[SimRecord] = []
        for _ in range(n):
            self._seq += 1
            index = _pick(cum_weights, rng.random())
            account = accounts[index]
            mix = mixes[index]
            # Two draws for every record, so that the hot metric's records of a hot account
            # do not depend on how many other metrics the catalog has.
            first, second = rng.random(), rng.random()
            if account.hot and self.hot_metric is not None and first < HOT_METRIC_SHARE:
                metric = self.hot_metric
            else:
                metric = mix.metrics[_pick(mix.cumulative, second)]
            if self.bad_every and self._seq % self.bad_every == 0:
                record = self._bad(account, now_ms)
                self.stats.bad += 1
            elif self._recent and rng.random() < DUPLICATE_RATE:
                again = self._recent[rng.randrange(len(self._recent))]
                record = SimRecord(again.key, again.value, "duplicate", headers=again.headers)
                self.stats.duplicates += 1
            else:
                # Records per second of this (account, metric) right now, to size one record.
                stream_rate = self.rate * weights[index] / total_weight * mix.share[metric]
                mean = self._per_min(account, metric, now_ms) / 60.0 / stream_rate
                record = self._usage(account, metric, mean, now_ms)
                self._recent.append(record)
                if record.kind == "cloudevent":
                    self.stats.cloudevents += 1
                else:
                    self.stats.usage += 1
            records.append(record)
        return records

    def _weight(self, account: Account) -> float:
        return account.activity * (BURST_WEIGHT if account.burst is not None else 1.0)

    def _metric_mix(self, account: Account) -> _Mix:
        """Which metrics the account's records are of: its share of each, and the cumulative
        shares its records pick from (a hot account's: of the metrics other than the hot one,
        which gets :data:`HOT_METRIC_SHARE` of its records)."""
        hot = self.hot_metric if account.hot else None
        shares: dict[str, float] = {}
        for metric in self._metrics:
            share = PROFILES.get(metric, DEFAULT_PROFILE).share
            if account.burst is not None and account.burst.metric == metric:
                share *= 3
            shares[metric] = share
        others = tuple(m for m in self._metrics if m != hot) or self._metrics
        total = sum(shares[m] for m in others)
        cumulative: list[float] = []
        running = 0.0
        for metric in others:
            running += shares[metric] / total
            cumulative.append(running)
        if hot is None:
            return _Mix(others, cumulative, {m: shares[m] / total for m in others})
        rest = 1.0 - HOT_METRIC_SHARE if others != self._metrics else 0.0
        of_records = {m: rest * shares[m] / total for m in others}
        of_records[hot] = 1.0 - rest
        return _Mix(others, cumulative, of_records)

    def _per_min(self, account: Account, metric: str, now_ms: int) -> float:
        """Units of ``metric`` the account uses per minute at ``now_ms``."""
        if account.burst is not None and account.burst.metric == metric:
            return account.burst.per_min
        base = account.base_per_min[metric]
        if account.hot and metric == self.hot_metric:
            return base  # steady, so the promise of "a threshold within minutes" holds
        return base * daily_rhythm(now_ms, account.tz_offset_h)

    def _update_bursts(self, now_ms: int) -> None:
        rng = self._burst_rng
        elapsed = 0 if self._last_ms is None else max(0, now_ms - self._last_ms)
        self._last_ms = now_ms
        start_p = 1.0 - math.exp(-elapsed / (BURST_EVERY_MS * len(self.accounts)))
        for account in self.accounts:
            if account.burst is not None and account.burst.until_ms <= now_ms:
                account.burst = None
            if account.burst is not None or account.hot or rng.random() >= start_p:
                continue
            limits = {
                m: lim
                for m in self._metrics
                if self._aggregation[m] == "sum" and (lim := account.limit(m)) is not None
            }
            candidates = [m for m in ("api_calls", "events") if m in limits] or list(limits)
            if not candidates:
                continue
            metric = rng.choice(candidates)
            limit = limits[metric]
            account.burst = Burst(
                metric=metric,
                per_min=limit * rng.uniform(*BURST_FRACTION_PER_MIN),
                until_ms=now_ms + rng.randint(*BURST_LENGTH_MS),
            )

    def _record_id(self) -> str:
        return f"{self.run_id}-{self._seq:09d}"

    def _timestamp(self, now_ms: int, rng: random.Random) -> int | str:
        stamp = now_ms - rng.randint(0, 2000)
        if rng.random() < LATE_RATE:
            stamp -= rng.randint(MINUTE_MS // 2, 10 * MINUTE_MS)
        if rng.random() < RFC3339_RATE:
            return to_rfc3339(stamp)
        return stamp

    def _quantity(self, metric: str, mean: float, rng: random.Random) -> int | float:
        noisy = mean * rng.lognormvariate(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA)  # mean kept
        integral = PROFILES.get(metric, DEFAULT_PROFILE).integral
        if integral:
            # Stochastic rounding keeps the mean when a record is worth less than one unit.
            whole = math.floor(noisy)
            return whole + (1 if rng.random() < noisy - whole else 0)
        return _number(noisy, False)

    def _hot_quantity(self, account: Account, metric: str, now_ms: int) -> int | float:
        """A hot account's usage of the hot metric since its previous record (since the
        start for the first): its total follows the clock, however many records carry it."""
        since = account.hot_since_ms if account.hot_since_ms is not None else self._start_ms
        elapsed = max(0, now_ms - (now_ms if since is None else since))
        owed = account.hot_owed + account.base_per_min[metric] * elapsed / MINUTE_MS
        account.hot_since_ms = now_ms
        if PROFILES.get(metric, DEFAULT_PROFILE).integral:
            whole = math.floor(owed)
            account.hot_owed = owed - whole
            return whole
        account.hot_owed = 0.0
        return _number(owed, False)

    def _latest(self, level: Level, now_ms: int, rng: random.Random) -> int:
        """The account's level now: one step at most since its previous reading, so readings
        move by one unit at a time (a hot account's up, a minute apart, to twice its limit)."""
        if level.next_ms is None:
            level.next_ms = now_ms + self._drift_ms(level, rng)
        elif now_ms >= level.next_ms:
            if level.hot:
                level.value = min(level.value + 1, level.top)
            else:
                # Back toward its usual level more often than away from it.
                up = 0.5 if level.value == level.base else 0.3 if level.value > level.base else 0.7
                level.value = max(1.0, level.value + (1 if rng.random() < up else -1))
            level.next_ms = now_ms + self._drift_ms(level, rng)
        return int(level.value)

    @staticmethod
    def _drift_ms(level: Level, rng: random.Random) -> int:
        return HOT_STEP_MS if level.hot else 1 + int(rng.expovariate(1 / DRIFT_EVERY_MS))

    @staticmethod
    def _max(level: Level, now_ms: int, rng: random.Random) -> float:
        """A reading of a growing level: the level now, or a little under it."""
        if level.since_ms is not None and now_ms > level.since_ms:
            grown = level.value + level.per_min * (now_ms - level.since_ms) / MINUTE_MS
            level.value = max(level.value, min(grown, level.top))
        level.since_ms = max(now_ms, level.since_ms or now_ms)
        return round(level.value * (1.0 - rng.uniform(0.0, READING_DIP)), 3)

    def _usage_value(
        self,
        account: Account,
        metric: str,
        quantity: int | float,
        now_ms: int,
        rng: random.Random,
    ) -> dict[str, Any]:
        value: dict[str, Any] = {
            "record_id": self._record_id(),
            "account_id": account.account_id,
            "metric": metric,
            "quantity": quantity,
            "timestamp": self._timestamp(now_ms, rng),
        }
        if rng.random() < 0.3:
            value["attributes"] = {"region": rng.choice(_REGIONS), "source": "simulator"}
        return value

    def _usage(self, account: Account, metric: str, mean: float, now_ms: int) -> SimRecord:
        rng = self._streams[metric]
        aggregation = self._aggregation[metric]
        user: str | None = None
        hot = account.hot and metric == self.hot_metric
        if hot:
            quantity = self._hot_quantity(account, metric, now_ms)
        elif aggregation == "latest":
            quantity = self._latest(account.levels[metric], now_ms, rng)
        elif aggregation == "max":
            quantity = self._max(account.levels[metric], now_ms, rng)
        elif aggregation in ("count", "unique_count"):
            quantity = 1  # optional, and ignored (contract 1.4)
            if aggregation == "unique_count":
                # Some users come back often, others now and then: the count grows gradually
                # (a hot account's new users come at once, as when a team joins).
                draw = rng.random() if account.hot else rng.random() ** 2
                user = f"user-{int(account.users[metric] * draw) + 1:04d}"
        else:
            quantity = self._quantity(metric, mean, rng)
        value = self._usage_value(account, metric, quantity, now_ms, rng)
        if user is not None:
            _put(value.setdefault("attributes", {}), self.catalog.unique_fields[metric], user)
        meter = self._meters.get(metric)
        # A hot account's hot metric stays plain, so its pace toward the limit holds.
        if meter is not None and not hot:
            if meter.value is not None or (quantity == 1 and rng.random() < CLOUDEVENT_SHARE):
                return self._as_cloudevent(meter, value, rng)
        return SimRecord(account.account_id.encode(), orjson.dumps(value), "usage")

    def _as_cloudevent(self, meter: Meter, record: dict[str, Any], rng: random.Random) -> SimRecord:
        """``record`` as a CloudEvent of ``meter``'s type, in either Kafka mode."""
        stamp = record["timestamp"]
        time = stamp if type(stamp) is str else to_rfc3339(stamp)
        event = cloudevent(
            meter, record["record_id"], record["account_id"], time, record["quantity"]
        )
        key = record["account_id"].encode()
        if rng.random() < 0.5:
            return SimRecord(key, orjson.dumps(event), "cloudevent", headers=STRUCTURED_HEADERS)
        binary: tuple[tuple[str, bytes], ...] = tuple(
            (f"ce_{name}", str(value).encode()) for name, value in event.items() if name != "data"
        )
        headers = (*binary, ("content-type", b"application/json"))
        return SimRecord(key, orjson.dumps(event["data"]), "cloudevent", headers=headers)

    def _bad(self, account: Account, now_ms: int) -> SimRecord:
        rng = self._bad_rng
        kind = BAD_KINDS[(self.stats.bad) % len(BAD_KINDS)]
        # Of a metric that takes a quantity: a count ignores a missing or negative one.
        metric = rng.choice(self._quantified)
        value = self._usage_value(account, metric, self._quantity(metric, 1.0, rng), now_ms, rng)
        if kind == "not-json":
            raw = orjson.dumps(value)
            raw = raw[: max(1, len(raw) // 2)]  # a truncated write
        else:
            if kind == "missing-field":
                del value[rng.choice(REQUIRED_FIELDS)]
            elif kind == "negative-quantity":
                value["quantity"] = -rng.randint(1, 50)
            elif kind == "future-timestamp":
                value["timestamp"] = now_ms + FUTURE_MS
            else:
                value["metric"] = rng.choice(("API Calls", "api calls!", "", "x" * 65))
            raw = orjson.dumps(value)
        return SimRecord(account.account_id.encode(), raw, "bad", kind)


def sending_meters(catalog: Catalog) -> dict[str, Meter]:
    """Per metric, the first meter a made-up event of its type feeds without a refusal."""
    meters: dict[str, Meter] = {}
    for meter in catalog.meters:
        if meter.metric in meters:
            continue
        value = orjson.dumps(cloudevent(meter, "probe", "probe", to_rfc3339(0), 1))
        try:
            readings = parse_cloudevent(value, (), catalog, 0, 0).readings
        except InvalidUsageRecord:
            continue  # its type also feeds a meter the simulator cannot (a unique_count)
        if any(r.metric == meter.metric for r in readings):
            meters[meter.metric] = meter
    return meters


def cloudevent(
    meter: Meter, event_id: str, account_id: str, time: str, quantity: int | float
) -> dict[str, Any]:
    """A structured-mode CloudEvent that ``meter`` takes: its ``where`` fields, and
    ``quantity`` at its ``value`` path (a meter without one counts the event)."""
    data: dict[str, Any] = {}
    fields = dict(meter.where)
    if meter.value is not None:
        fields[meter.value] = quantity
    for path, wanted in fields.items():
        _put(data, path, wanted)
    return {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": CLOUDEVENT_SOURCE,
        "type": meter.event_type,
        "subject": account_id,
        "time": time,
        "data": data,
    }


@dataclass(frozen=True, slots=True)
class _Mix:
    """An account's metrics right now: those its records pick from (by ``cumulative`` shares)
    and each metric's share of its records."""

    metrics: tuple[str, ...]
    cumulative: list[float]
    share: dict[str, float]


def _stream(seed: int, name: str) -> random.Random:
    """The random stream ``name`` of ``seed``: the same draws for the same pair, every run."""
    # Not for security: a seeded, reproducible stream of made-up traffic.
    return random.Random(f"{seed}/{name}")  # noqa: S311


def _pick(cumulative: Sequence[float], draw: float) -> int:
    """The index whose slot of the ``cumulative`` weights ``draw`` (in [0, 1)) falls into."""
    return min(bisect.bisect_right(cumulative, draw * cumulative[-1]), len(cumulative) - 1)


def _put(into: dict[str, Any], path: Sequence[str], value: object) -> None:
    """Set ``value`` at ``path`` (nested objects made as needed)."""
    for name in path[:-1]:
        into = into.setdefault(name, {})
    into[path[-1]] = value


def _number(value: float, integral: bool) -> int | float:
    """A quantity as JSON wants it: an int when whole, else a float with 3 decimals."""
    if integral or value == int(value):
        return int(round(value))
    return round(value, 3)
