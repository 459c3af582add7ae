"""Daily totals and drop episodes of one account: the state sudden-drop detection reads.

One value per account (all its metrics) so a batch touches each account once and a
day's evaluation reads each account once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.drops import DailyTotals, Episode


@dataclass(slots=True)
class AccountDaily:
    """Per-metric daily totals and open drop episodes of one account."""

    metrics: dict[str, DailyTotals] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)

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
        """Delete days before ``oldest_day_kept``; True if anything went."""
        changed = False
        for daily in self.metrics.values():
            changed = daily.prune(oldest_day_kept) or changed
        return changed

    def is_empty(self) -> bool:
        """No day kept and no open episode: the account can be forgotten."""
        return not self.episodes and all(d.is_empty() for d in self.metrics.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the daily table."""
        out: dict[str, Any] = {"m": {m: d.to_json() for m, d in self.metrics.items()}}
        if self.episodes:
            out["e"] = {m: e.to_json() for m, e in self.episodes.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AccountDaily:
        """Inverse of :meth:`to_json`; ``None`` gives empty state."""
        if not data:
            return cls()
        return cls(
            metrics={m: DailyTotals.from_json(d) for m, d in data.get("m", {}).items()},
            episodes={m: Episode.from_json(e) for m, e in data.get("e", {}).items()},
        )
