"""Like with like for the rebuild check: a worker's background work read from its log,
its account views, and every field where two views differ."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from benchmark.workers import Worker
from benchmark.workload import Dataset

SAMPLE_ACCOUNTS: Final = 20
"""Accounts whose /accounts/{id} view is compared between the original and rebuilt worker."""
#: Log lines of background work (agents/ticks.py, agents/drops.py, agents/anniversaries.py).
BACKGROUND_LINE: Final = re.compile(
    r"partition (?P<p>\d+): (?:"
    r"day (?P<tick_day>\d+) closed, cut (?P<tick_cut>\d+) due .*tick sent"
    r"|evaluating day (?P<drop_start>\d+) for drops"
    r"|day (?P<drop_done>\d+) evaluated for drops"
    r"|anniversary pass at cut (?P<cut_start>\d+) started"
    r"|anniversary pass at cut (?P<cut_done>\d+) complete)"
)
#: After the log says background work is done: time for its last slice to commit and
#: reach RocksDB (the log line is written when the slice is decided, before its commit).
BACKGROUND_SETTLE_S: Final = 2.5


def sample_accounts(data: Dataset) -> list[str]:
    """Accounts spread over the dataset whose state is compared after the rebuild."""
    step = max(1, len(data.accounts) // SAMPLE_ACCOUNTS)
    return data.accounts[::step][:SAMPLE_ACCOUNTS]


@dataclass(slots=True)
class Background:
    """Background work per partition, as a worker's log tells it."""

    lines: int = 0
    """Background lines seen (any new one means work started or moved on)."""
    ticked: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per partition, (day, cut) of its last tick."""
    drops: dict[int, int] = field(default_factory=dict)
    """Per partition, the last day whose drop evaluation completed."""
    cuts: dict[int, int] = field(default_factory=dict)
    """Per partition, the last cut whose anniversary pass completed."""
    running: dict[int, list[str]] = field(default_factory=dict)
    """Per partition, work started and not completed."""
    resumed: list[str] = field(default_factory=list)
    """Work completed with no start in this log (resumed from another worker's cursor)."""

    def busy(self, partitions: int, *, ticks_expected: bool) -> list[str]:
        """What is not finished yet ([] when idle): work running, a tick's work not done,
        or (``ticks_expected``) a partition that has had no tick yet."""
        out: list[str] = []
        for p in range(partitions):
            out += [f"p{p} {what}" for what in self.running.get(p, [])]
            tick = self.ticked.get(p)
            if tick is None:
                if ticks_expected:
                    out.append(f"p{p} no tick yet")
                continue
            day, cut = tick
            if self.drops.get(p, -1) < day:
                out.append(f"p{p} drops of day {day} not evaluated")
            if self.cuts.get(p, -1) < cut:
                out.append(f"p{p} anniversary pass at cut {cut} not complete")
        return out


def background_of(lines: Iterable[str]) -> Background:
    """Background work started and completed, from a worker's log lines."""
    bg = Background()
    started: dict[tuple[int, str], int] = {}
    for line in lines:
        match = BACKGROUND_LINE.search(line)
        if match is None:
            continue
        bg.lines += 1
        p = int(match["p"])
        if match["tick_day"] is not None:
            bg.ticked[p] = (int(match["tick_day"]), int(match["tick_cut"]))
        elif match["drop_start"] is not None:
            started[p, "drops"] = int(match["drop_start"])
        elif match["cut_start"] is not None:
            started[p, "cut"] = int(match["cut_start"])
        elif match["drop_done"] is not None:
            day = bg.drops[p] = int(match["drop_done"])
            if started.pop((p, "drops"), None) is None:
                bg.resumed.append(f"p{p} drops of day {day}")
        elif match["cut_done"] is not None:
            cut = bg.cuts[p] = int(match["cut_done"])
            if started.pop((p, "cut"), None) is None:
                bg.resumed.append(f"p{p} anniversary pass at cut {cut}")
    for (p, kind), value in started.items():
        what = f"drops of day {value}" if kind == "drops" else f"anniversary pass at cut {value}"
        bg.running.setdefault(p, []).append(f"{what} running")
    return bg


async def wait_background_idle(
    w: Worker, partitions: int, deadline: float, *, ticks_expected: bool
) -> tuple[str, int]:
    """Wait until the worker's background work (drop evaluations, anniversary passes) is
    finished and has settled; ("", background lines then) or (why not, lines)."""
    while True:
        bg = background_of(w.log_lines())
        busy = bg.busy(partitions, ticks_expected=ticks_expected)
        if not busy:
            await asyncio.sleep(BACKGROUND_SETTLE_S)
            again = background_of(w.log_lines())
            if again.lines == bg.lines:
                return "", bg.lines
            continue  # something started meanwhile (a new day or cut): wait for it too
        if (code := w.exited()) is not None:
            return f"{w.label} exited with {code}", bg.lines
        if time.monotonic() > deadline:
            return "background work still running: " + ", ".join(busy), bg.lines
        await asyncio.sleep(0.5)


def differences(original: Any, rebuilt: Any, path: str = "") -> list[str]:
    """Every leaf where ``rebuilt`` differs from ``original``, with both values in full."""
    if isinstance(original, dict) and isinstance(rebuilt, dict):
        out: list[str] = []
        for key in sorted(original.keys() | rebuilt.keys(), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in rebuilt:
                out.append(f"{where}: original {original[key]!r}, rebuilt (missing)")
            elif key not in original:
                out.append(f"{where}: original (missing), rebuilt {rebuilt[key]!r}")
            else:
                out += differences(original[key], rebuilt[key], where)
        return out
    if (
        isinstance(original, list | tuple)
        and isinstance(rebuilt, list | tuple)
        and len(original) == len(rebuilt)
    ):
        out = []
        for i, (a, b) in enumerate(zip(original, rebuilt, strict=True)):
            out += differences(a, b, f"{path}[{i}]")
        return out
    if original == rebuilt:
        return []
    return [f"{path or '(whole)'}: original {original!r}, rebuilt {rebuilt!r}"]


async def account_views(w: Worker, ids: Sequence[str]) -> dict[str, tuple[int, Any]]:
    """(status, parsed body) of ``/accounts/{id}`` for each id."""
    out: dict[str, tuple[int, Any]] = {}
    for account in ids:
        status, body = await w.get(f"/accounts/{account}")
        try:
            out[account] = (status, orjson.loads(body))
        except orjson.JSONDecodeError:
            out[account] = (status, body)
    return out


def report_background_changes(
    early: dict[str, tuple[int, Any]], idle: dict[str, tuple[int, Any]]
) -> None:
    """What background work changed in the views between 2.5 s after the last record
    (when the check used to read them) and idle: what a check without the wait mixes."""
    changed = {a: differences(v, idle.get(a)) for a, v in early.items()}
    changed = {a: d for a, d in changed.items() if d}
    fields = Counter(
        re.sub(r"\[\d+\]|\b\d{4}-\d\d-\d\d\b", "*", line.split(":")[0])
        for d in changed.values()
        for line in d
    )
    print(
        f"  background work after the last record changed {len(changed)}/{len(early)} views"
        + (": " + ", ".join(f"{f} x{n}" for f, n in fields.most_common()) if fields else "")
    )
