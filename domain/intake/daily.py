"""Daily totals and drop episodes of one account: the state sudden-drop detection reads.

One value per account (all its metrics) so a batch touches each account once and a
day's evaluation reads each account once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.plans.periods import utc_day
from domain.rules.drops import DailyTotals, Episode


@dataclass(slots=True)
class AccountDaily:
    """Per-metric daily totals and open drop episodes of one account."""

    metrics: dict[str, DailyTotals] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    #: When billing deleted the account (its tombstone's time), while that is kept: a plan
    #: record older than it is stale (contract 1.2). Kept here because the daily sweep
    #: visits every key of this table, so the marker expires with the days around it.
    forgotten_at_ms: int | None = None

    def add(self, metric: str, ts_ms: int, quantity: Decimal) -> None:
        """Count ``quantity`` in the UTC day of ``ts_ms``."""
        daily = self.metrics.get(metric)
        if daily is None:
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
        for daily in self.metrics.values():
            changed = daily.prune(oldest_day_kept) or changed
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
            metrics={m: DailyTotals.from_json(d) for m, d in data.get("m", {}).items()},
            episodes={m: Episode.from_json(e) for m, e in data.get("e", {}).items()},
            forgotten_at_ms=data.get("f"),
        )

    @classmethod
    def forgotten(cls, at_ms: int) -> AccountDaily:
        """The state of an account billing deleted at ``at_ms``: nothing but the marker."""
        return cls(forgotten_at_ms=at_ms)
