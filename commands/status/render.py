"""``moments status``'s table: one line per worker and a line of totals, and the exit status
(pure; the HTTP side is :mod:`commands.status.fetch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker's ``/status`` answer, or why there is none."""

    url: str
    body: dict[str, Any] | None
    error: str | None = None

    @property
    def ready(self) -> bool:
        """Answered and ready."""
        return self.body is not None and bool(self.body.get("ready"))


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _partitions(values: Sequence[int]) -> str:
    return ",".join(str(p) for p in values) or "-"


def render(statuses: Sequence[WorkerStatus]) -> str:
    """A table: one line per worker, then one line of totals."""
    header = ("WORKER", "READY", "ACTIVE", "STANDBY", "LAG", "STATE", "DETAIL")
    rows: list[tuple[str, ...]] = []
    lag_total = state_total = 0
    for s in statuses:
        if s.body is None:
            rows.append((s.url, "down", "-", "-", "-", "-", s.error or ""))
            continue
        body = s.body
        parts = body.get("partitions", {})
        lag = int(body.get("lag_total", 0))
        state = int(body.get("state_bytes_total", 0))
        lag_total += lag
        state_total += state
        failing = [name for name, ok in sorted(body.get("checks", {}).items()) if not ok]
        rows.append(
            (
                str(body.get("url", s.url)),
                "yes" if s.ready else "no",
                _partitions(parts.get("active", [])),
                _partitions(parts.get("standby", [])),
                str(lag),
                _size(state),
                "not " + ", not ".join(failing) if failing else "",
            )
        )
    ready = sum(1 for s in statuses if s.ready)
    rows.append(
        (
            f"{len(statuses)} workers",
            f"{ready} ready",
            "",
            "",
            str(lag_total),
            _size(state_total),
            "",
        )
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in (header, *rows)
    ]
    return "\n".join(lines)


def exit_code(statuses: Sequence[WorkerStatus]) -> int:
    """0 when every worker answered and is ready, 1 otherwise (or when none was found)."""
    return 0 if statuses and all(s.ready for s in statuses) else 1
