"""The bench's workers (the harness's process, with the figures the bench reports) and
their measured windows: records counted over time, CPU of everyone on the machine."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from benchmark.workload import Dataset
from tests.harness.meters import (
    CLK_TCK,
    broker_pid,
    cpu_seconds,
    disk_usage,
    machine_busy,
    status_kb,
)
from tests.harness.metrics import Metrics
from tests.harness.ports import free_port
from tests.harness.process import NotReady, OnProcess, WorkerProcess, worker_env

Guarantee = Literal["exactly_once", "at_least_once"]
GUARANTEES: Final[tuple[Guarantee, ...]] = ("exactly_once", "at_least_once")
POLL_READY_S: Final = 0.1
POLL_METRICS_S: Final = 0.25
PROGRESS_EVERY_S: Final = 5.0
LOG_PREFIX: Final = re.compile(r"^(\[[^\]]*\]\s*\[\d+\]\s*|[\d\-]+ [\d:,.]+\s+)")
"""Faust's ``[time] [pid] `` or logging's ``date time `` at the start of a log line."""
NOTABLE: Final = re.compile(r"\b(ERROR|CRITICAL|WARNING|Traceback|[Rr]ebalanc\w*|Exception)\b")
_running: list[Worker] = []
"""Workers started and not yet stopped, so an interrupted run leaves none behind."""


class Worker(OnProcess):
    """One ``moments worker`` process started by the bench, with its figures."""

    def __init__(
        self,
        args: argparse.Namespace,
        data: Dataset,
        app_id: str,
        guarantee: Guarantee,
        label: str,
        *,
        log_name: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.label = label
        self.app_id = app_id
        self.guarantee = guarantee
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"{log_name or app_id}-"))
        extra = {
            "MOMENTS_PROCESSING_GUARANTEE": guarantee,
            "MOMENTS_LOG_LEVEL": "info",
            **(extra or {}),
        }
        if args.batch_size is not None:
            extra["MOMENTS_BATCH_SIZE"] = str(args.batch_size)
        if getattr(args, "plans_file", None) is not None:
            extra["MOMENTS_PLANS_FILE"] = str(args.plans_file)
        port = free_port()
        self.process = WorkerProcess(
            env=worker_env(
                bootstrap=args.bootstrap,
                app_id=app_id,
                data_dir=self.data_dir,
                port=port,
                usage_topic=data.usage_topic,
                plans_topic=data.plans_topic,
                partitions=data.partitions,
                **extra,
            ),
            port=port,
            log_path=Path(args.log_dir) / f"{log_name or app_id}.log",
            command=shlex.split(args.worker_command),
        )
        self.ready_s = math.nan
        self.peak_rss_mb = 0.0
        self.cpu_s = 0.0
        self.exit_code: int | None = None
        self.stop_s = math.nan
        self.killed = False
        self.state_bytes: tuple[int, int] | None = None

    @property
    def prefix(self) -> str:
        """Event topic prefix of this worker."""
        return self.process.env["MOMENTS_TOPIC_PREFIX"]

    def start(self) -> None:
        """Start the process, logging to ``log_path``."""
        self.process.start()
        _running.append(self)

    def exited(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self.process.exited()

    async def get(self, path: str) -> tuple[int, str]:
        """GET ``path`` on this worker without blocking the event loop."""
        status, body = await self.process.aget(path)
        return status, body.decode(errors="replace")

    async def metrics(self) -> Metrics | None:
        """The worker's metrics, or None when it does not answer."""
        return await self.process.metrics()

    async def wait_ready(self, deadline: float) -> str:
        """Wait for /readyz 200; "" when ready, else why not."""
        try:
            self.ready_s = await self.process.ready(deadline, poll_s=POLL_READY_S)
        except NotReady as not_ready:
            if not_ready.exit_code is not None:
                return f"{self.label} exited with {not_ready.exit_code} before ready"
            return f"{self.label} not ready in {self.args.max_seconds:.0f} s"
        return ""

    def sample(self) -> tuple[float, float]:
        """(CPU seconds, RSS MB) now; also updates the peak RSS and CPU figures."""
        proc = self.process.proc
        if proc is None or proc.poll() is not None:
            return self.cpu_s, 0.0
        try:
            self.cpu_s = cpu_seconds(proc.pid)
            rss = status_kb(proc.pid, "VmRSS") / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, status_kb(proc.pid, "VmHWM") / 1024)
        except (OSError, IndexError, ValueError):
            return self.cpu_s, 0.0
        return self.cpu_s, rss

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``--stop-timeout``; measures the state on disk."""
        if self.process.proc is not None and self.exit_code is None:
            self.sample()
            stopping = time.monotonic()
            self.exit_code, self.killed = await asyncio.to_thread(
                self.process.stop, self.args.stop_timeout
            )
            self.stop_s = time.monotonic() - stopping
        if self in _running:
            _running.remove(self)
        if self.state_bytes is None and self.data_dir.exists():
            self.state_bytes = disk_usage(self.data_dir)

    def stop_text(self) -> str:
        """How the process ended, for the report."""
        if self.killed:
            return f"still running {self.args.stop_timeout:.0f}s after SIGTERM, SIGKILLed"
        return f"stopped with SIGTERM in {self.stop_s:.1f}s, exit status {self.exit_code}"

    def remove_state(self) -> None:
        """Delete the data dir (after its size was taken)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_lines(self) -> list[str]:
        """The worker's log, without timestamps."""
        return [LOG_PREFIX.sub("", line).strip() for line in self.process.log_text().splitlines()]

    def report_log(self, limit: int = 6) -> None:
        """The most frequent warnings, errors and rebalance lines of the log."""
        shapes: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for line in self.log_lines():
            if NOTABLE.search(line):
                # Lines that differ only in numbers count together.
                shape = re.sub(r"\d+", "N", line[:200])
                shapes[shape] += 1
                examples.setdefault(shape, line[:200])
        if shapes:
            print(f"  {self.label}: notable log lines ({sum(shapes.values())}), {self.log_path}:")
            for shape, count in shapes.most_common(limit):
                print(f"    {count:5d} x {examples[shape]}")


def stop_running() -> None:
    """Kill every worker started and not stopped (an interrupted run), and drop its state."""
    for w in list(_running):
        w.process.kill()
        w.remove_state()


async def stop_all(workers: Sequence[Worker]) -> None:
    """Stop workers in parallel."""
    await asyncio.gather(*(w.stop() for w in workers))


class CpuMeter:
    """CPU used by workers, the broker, this bench and everything else, over a stretch."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = workers
        self.worker0 = [w.sample()[0] for w in workers]
        self.kafka = broker_pid()
        self.broker0 = self._broker()
        self.busy0 = machine_busy()
        self.own0 = time.process_time()
        self.wall0 = time.monotonic()
        self.worker_s: list[float] = []
        self.broker_s: float | None = None
        self.bench_s = self.other_s = self.wall_s = self.busy_pct = 0.0

    def _broker(self) -> float | None:
        try:
            return cpu_seconds(self.kafka) if self.kafka else None
        except OSError:
            return None

    def stop(self) -> CpuMeter:
        """Take the figures since construction."""
        self.worker_s = [w.sample()[0] - c for w, c in zip(self.workers, self.worker0, strict=True)]
        broker1 = self._broker()
        if broker1 is not None and self.broker0 is not None:
            self.broker_s = broker1 - self.broker0
        busy1 = machine_busy()
        self.busy_pct = 100 * (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1])
        self.bench_s = time.process_time() - self.own0
        self.wall_s = time.monotonic() - self.wall0
        self.other_s = max(
            0.0,
            (busy1[0] - self.busy0[0]) / CLK_TCK
            - sum(self.worker_s)
            - (self.broker_s or 0.0)
            - self.bench_s,
        )
        return self

    @property
    def other_cores(self) -> float:
        """Average cores used by other processes."""
        return self.other_s / self.wall_s if self.wall_s > 0 else 0.0

    def text(self) -> str:
        """One line of CPU figures."""
        if len(self.worker_s) != len(self.workers):
            return "CPU: not measured"
        cpu = ", ".join(
            f"{w.label} {c:.1f}s ({100 * c / max(self.wall_s, 1e-9):.0f}% of a core)"
            for w, c in zip(self.workers, self.worker_s, strict=True)
        )
        broker = f"; broker {self.broker_s:.1f}s" if self.broker_s is not None else ""
        return (
            f"CPU over {self.wall_s:.0f}s: {cpu}{broker}; bench {self.bench_s:.1f}s;"
            f" other processes {self.other_s:.1f}s ({self.other_cores:.2f} cores);"
            f" machine busy {self.busy_pct:.0f}% of {os.cpu_count()} CPUs"
        )


@dataclass(slots=True)
class Window:
    """Records counted by one or more workers over a measured stretch of time."""

    expected: int
    start_count: float
    started: float
    end: float = math.nan
    processed: float = 0.0
    finished: bool = False
    note: str = ""
    last: list[Metrics] = field(default_factory=list)
    cpu: CpuMeter | None = None

    @property
    def seconds(self) -> float:
        """Length of the window (to the finish, or to where it was cut off)."""
        return self.end - self.started

    @property
    def counted(self) -> float:
        """Records counted inside the window."""
        return (self.expected if self.finished else self.processed) - self.start_count

    @property
    def rate(self) -> float:
        """Records/s inside the window (partial when not finished)."""
        return self.counted / self.seconds if self.seconds > 0 else 0.0


async def follow(
    workers: Sequence[Worker],
    expected: int,
    started: float,
    start_count: float,
    deadline: float,
    stall_s: float,
    limit_s: float,
) -> Window:
    """Poll the workers' metrics until their record counts add up to ``expected``.

    The finish time is interpolated between the two polls around it. Progress is
    printed every few seconds; the window ends early at ``deadline``, after
    ``stall_s`` without progress, or when a worker exits.
    """
    win = Window(expected, start_count, started, processed=start_count)
    meter = CpuMeter(workers)
    cpu0 = meter.worker0
    prev = (started, start_count)
    shown = (started, start_count, sum(cpu0))
    progress = (started, start_count)
    while True:
        await asyncio.sleep(POLL_METRICS_S)
        before = time.monotonic()
        gone = [w for w in workers if w.exited() is not None]
        if gone:
            win.note = f"{gone[0].label} exited with {gone[0].exited()} while processing"
            win.end = before
            break
        answers = await asyncio.gather(*(w.metrics() for w in workers))
        now = (before + time.monotonic()) / 2
        if all(a is not None for a in answers):
            win.last = [a for a in answers if a is not None]
            count = sum(m.total("moments_records_total") for m in win.last)
            if count >= expected:
                win.processed = count
                win.end = prev[0] + (now - prev[0]) * (expected - prev[1]) / max(
                    count - prev[1], 1e-9
                )
                win.finished = True
                break
            win.processed = count
            prev = (now, count)
            if count > progress[1]:
                progress = (now, count)
        if now - progress[0] > stall_s:
            win.note = f"no progress for {stall_s:.0f} s"
            win.end = now
            break
        if now > deadline:
            win.note = f"did not finish in {limit_s:.0f} s"
            win.end = now
            break
        if now - shown[0] >= PROGRESS_EVERY_S:
            samples = [w.sample() for w in workers]
            cpu = sum(s[0] for s in samples)
            rss = "/".join(f"{s[1]:.0f}" for s in samples)
            print(
                f"  t+{now - started:6.1f}s  {win.processed:9.0f} records"
                f"  {(win.processed - shown[1]) / (now - shown[0]):8.0f} rec/s"
                f"  cpu {100 * (cpu - shown[2]) / (now - shown[0]):4.0f}%"
                f"  rss {rss} MB"
            )
            shown = (now, win.processed, cpu)
    win.cpu = meter.stop()
    return win
