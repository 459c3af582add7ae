"""What the bench prints: a window's and a worker's details, and the final table of
figures against their targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from benchmark.workers import CpuMeter, Window, Worker

TARGET_SHARE: Final = 0.35
"""Records/s of one exactly_once worker: at least this share of the baseline loop's, measured
in the same run (issue 20)."""
TARGET_CPU_SCALING: Final = 1.10
"""Three workers in one group: CPU per record at most this many times one worker's (issue 20;
CPU, not throughput: the machine has two cores)."""
TARGET_P99_S: Final = 0.25
"""End-to-end latency p99 at LATENCY_SHARE of the worker's own measured records/s."""
LATENCY_SHARE: Final = 0.40
"""The latency section offers this share of the exactly_once worker's measured records/s."""
TARGET_RSS_MB: Final = 600.0
TARGET_FIRST_COMMIT_S: Final = 5.0
"""Worker start to its first usage commit with 100,000 plans to read first."""
RatioKind = Literal["rate", "time", "cpu"]
"""How a figure compares with the baseline loop: a rate as a share of its records/s, a time
as a multiple of its time for the whole backlog, CPU per record as a multiple of its own."""


@dataclass(slots=True)
class BaselineRef:
    """The plain aiokafka loop of this run: what every figure is also given relative to."""

    rate: float
    """Records/s."""
    seconds: float
    """Seconds it took for the backlog."""
    cpu_us: float
    """CPU microseconds per record (of the bench process, which ran only the loop)."""


def vs_baseline(kind: RatioKind, value: float, ref: BaselineRef | None) -> str:
    """``value`` relative to the baseline loop, as printed next to the figure ("" without a
    baseline or a measurable value)."""
    if ref is None or not math.isfinite(value) or value < 0:
        return ""
    if kind == "rate":
        return f"{value / ref.rate:.1%} of baseline" if ref.rate > 0 else ""
    if kind == "time":
        return f"{value / ref.seconds:.2f}x baseline backlog read" if ref.seconds > 0 else ""
    return f"{value / ref.cpu_us:.1f}x baseline CPU/rec" if ref.cpu_us > 0 else ""


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
    ratio: tuple[RatioKind, float] | None = None
    """The measured value to give relative to the baseline loop, and how."""


class Report:
    """Rows of the final table, printed sorted by the brief's figure numbers."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.failures = 0
        self.load: list[tuple[str, float]] = []
        self.baseline: BaselineRef | None = None

    def other_load(self, section: str, meter: CpuMeter | None) -> None:
        """Remember how much CPU other processes took during a measurement."""
        if meter is not None:
            self.load.append((section, meter.other_cores))

    def add(
        self,
        figure_no: int,
        figure: str,
        measured: str,
        target: str,
        verdict: str,
        ratio: tuple[RatioKind, float] | None = None,
    ) -> None:
        """Add a row under figure ``figure_no`` (1-7); ``ratio``: (kind, value) to show
        relative to the baseline loop."""
        self.rows.append(Row((figure_no, len(self.rows)), figure, measured, target, verdict, ratio))

    def relative(self, kind: RatioKind, value: float) -> str:
        """``value`` relative to this run's baseline loop, in brackets ("" without one)."""
        text = vs_baseline(kind, value, self.baseline)
        return f" ({text})" if text else ""

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
        print()
        for line in table_lines(self.rows, self.baseline):
            print(line)


def at_most(measured: float, limit: float, unit: str, fmt: str = "{:,.1f}") -> str:
    """Verdict for a figure that must stay below ``limit``."""
    if measured < limit:
        return f"met ({fmt.format(limit - measured)} {unit} under)"
    return f"MISSED by {fmt.format(measured - limit)} {unit} ({measured / limit:.1f}x the limit)"


def partial(win: Window) -> str:
    """Suffix of a rate that was cut off."""
    return "" if win.finished else f" (partial: {win.note})"


def table_lines(rows: Sequence[Row], baseline: BaselineRef | None) -> list[str]:
    """The final table: figure, measured, relative to the baseline loop, target, verdict."""
    ordered = sorted(rows, key=lambda r: r.order)
    cells = [("figure", "measured", "vs baseline loop", "target", "verdict")]
    for r in ordered:
        ratio = vs_baseline(r.ratio[0], r.ratio[1], baseline) if r.ratio else ""
        cells.append((r.figure, r.measured, ratio or "-", r.target, r.verdict))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return [
        f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:>{widths[2]}}  {c[3]:<{widths[3]}}"
        f"  {c[4]}".rstrip()
        for c in cells
    ]


def share_verdict(rate: float, ref: BaselineRef | None, share: float) -> str:
    """Verdict for a rate that must reach ``share`` of the baseline loop's."""
    if ref is None or ref.rate <= 0:
        return "not judged: no baseline loop in this run"
    got = rate / ref.rate
    if got >= share:
        return f"met ({got:.1%} of baseline, +{got - share:.1%})"
    return (
        f"MISSED by {share - got:.1%} of baseline ({got:.1%}; {share * ref.rate - rate:,.0f}"
        " rec/s short)"
    )
