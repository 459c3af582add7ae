"""What the bench prints: a window's and a worker's details, and the final table of
figures against their targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from benchmark.workers import CpuMeter, Window, Worker

TARGET_RPS: Final = 50_000.0
"""Records/s of one exactly_once worker with all tables on it."""
TARGET_SCALING: Final = 1.7
"""Two workers in one group: at least this many times one worker's rate."""
TARGET_P99_S: Final = 0.5
"""End-to-end latency p99 at a steady 10,000 records/s."""
TARGET_RSS_MB: Final = 600.0
TARGET_FIRST_COMMIT_S: Final = 10.0
"""Worker start to its first usage commit with 100,000 plans to read first."""


def report_window(win: Window, workers: Sequence[Worker]) -> None:
    """Details of a measured window below its progress lines."""
    state = "done" if win.finished else f"STOPPED EARLY: {win.note}"
    print(
        f"  {state}: {win.counted:.0f}/{win.expected - win.start_count:.0f} records in"
        f" {win.seconds:.1f}s -> {win.rate:,.0f} rec/s"
    )
    if win.cpu is not None:
        print(f"  {win.cpu.text()}")
    odd = {
        outcome: count
        for metrics in win.last
        for outcome, count in metrics.by_label("moments_records_total", "outcome").items()
        if outcome not in ("accepted", "duplicate") and count
    }
    if odd:
        print(f"  NOTE: every record is valid and every account has a plan, yet {odd}")
    for w, metrics in zip(workers, win.last, strict=False):
        outcomes = metrics.by_label("moments_records_total", "outcome")
        batches = metrics.value("moments_batch_seconds_count")
        batch_s = metrics.value("moments_batch_seconds_sum")
        shown = {k: int(v) for k, v in sorted(outcomes.items()) if v}
        line = (
            f"  {w.label}: outcomes {shown}; events"
            f" {metrics.total('moments_events_total'):.0f};"
            f" rebalances {metrics.total('moments_rebalances_total'):.0f}"
        )
        if batches:
            line += (
                f"; {batches:.0f} batches of {sum(outcomes.values()) / batches:.0f} records,"
                f" {1000 * batch_s / batches:.0f} ms each"
            )
        print(line)


def report_worker(w: Worker) -> None:
    """Readiness, memory, state and stop of one worker."""
    state = ""
    if w.state_bytes is not None:
        state = f"; data dir {mb(w.state_bytes[0])} on disk ({mb(w.state_bytes[1])} apparent)"
    ready = "never ready" if math.isnan(w.ready_s) else f"ready {w.ready_s:.1f}s after start"
    print(
        f"  {w.label}: {ready}; peak RSS {w.peak_rss_mb:.0f} MB;"
        f" CPU {w.cpu_s:.1f}s since start{state}; {w.stop_text()}"
    )
    w.report_log()


def mb(n: float) -> str:
    """Bytes as MB text."""
    return f"{n / 1e6:,.1f} MB"


@dataclass(slots=True)
class Row:
    """One line of the final table."""

    order: tuple[int, int]
    figure: str
    measured: str
    target: str
    verdict: str


class Report:
    """Rows of the final table, printed sorted by the brief's figure numbers."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.failures = 0
        self.load: list[tuple[str, float]] = []

    def other_load(self, section: str, meter: CpuMeter | None) -> None:
        """Remember how much CPU other processes took during a measurement."""
        if meter is not None:
            self.load.append((section, meter.other_cores))

    def add(self, figure_no: int, figure: str, measured: str, target: str, verdict: str) -> None:
        """Add a row under figure ``figure_no`` (1-7)."""
        self.rows.append(Row((figure_no, len(self.rows)), figure, measured, target, verdict))

    def failed(self, figure_no: int, figure: str, target: str, why: str) -> None:
        """A figure that could not be measured."""
        self.failures += 1
        self.add(figure_no, figure, f"FAILED: {why}", target, "not measured")

    def rss(self, w: Worker) -> None:
        """The peak-RSS row of a worker."""
        if w.peak_rss_mb <= 0:
            return
        self.add(
            4,
            f"peak RSS, {w.label}",
            f"{w.peak_rss_mb:,.0f} MB",
            f"< {TARGET_RSS_MB:.0f} MB",
            at_most(w.peak_rss_mb, TARGET_RSS_MB, "MB", "{:,.0f}"),
        )

    def print(self) -> None:
        """The final table."""
        if self.load:
            section, cores = max(self.load, key=lambda item: item[1])
            self.add(
                8,
                "CPU of other processes during measurements (max)",
                f"{cores:.2f} cores ({section})",
                "~0 (a quiet machine)",
                "figures likely skewed by other load" if cores > 0.25 else "ok",
            )
        rows = sorted(self.rows, key=lambda r: r.order)
        header = Row((0, 0), "figure", "measured", "target", "verdict")
        widths = [
            max(len(getattr(r, name)) for r in (header, *rows))
            for name in ("figure", "measured", "target")
        ]
        print()
        for r in (header, *rows):
            print(
                f"{r.figure:<{widths[0]}}  {r.measured:>{widths[1]}}  {r.target:<{widths[2]}}"
                f"  {r.verdict}"
            )


def at_least(measured: float, target: float, unit: str, fmt: str = "{:,.0f}") -> str:
    """Verdict for a figure that must reach ``target``."""
    if measured >= target:
        return f"met (+{fmt.format(measured - target)} {unit}, {measured / target:.0%} of target)"
    short = f"{target / measured:.1f}x short" if measured > 0 else "nothing measured"
    return (
        f"MISSED by {fmt.format(target - measured)} {unit}"
        f" ({measured / target:.1%} of target, {short})"
    )


def at_most(measured: float, limit: float, unit: str, fmt: str = "{:,.1f}") -> str:
    """Verdict for a figure that must stay below ``limit``."""
    if measured < limit:
        return f"met ({fmt.format(limit - measured)} {unit} under)"
    return f"MISSED by {fmt.format(measured - limit)} {unit} ({measured / limit:.1f}x the limit)"


def partial(win: Window) -> str:
    """Suffix of a rate that was cut off."""
    return "" if win.finished else f" (partial: {win.note})"
