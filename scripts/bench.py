"""Throughput of one ``moments worker`` against a plain aiokafka loop, on a backlog.

Run with the local broker up (``make bench`` starts it)::

    .venv/bin/python scripts/bench.py [--records N] [--accounts A] [--partitions P]

What it does, printing figures and never asserting timings:

1. creates fresh, uniquely named usage and plans topics (P partitions), publishes a plan
   for each of A accounts and then N valid usage records (keyed by account, several
   metrics, a few per cent re-sent with the same ``record_id``) as fast as aiokafka
   goes (linger, big batches, acks=1, orjson) and reports the producer rate;
2. baseline: a plain consumer (no group, assign + seek to beginning, read_committed)
   reads the N records, ``orjson.loads`` each value and sums quantities per account;
3. for each processing guarantee, starts ONE real ``moments worker`` on the backlog
   (fresh app id, data dir and port) and measures from ``/readyz`` 200 until
   ``moments_records_total`` (all outcomes) reaches N, sampling the worker's CPU and
   RSS from ``/proc`` along the way;
4. prints a table: baseline, worker per guarantee, ratio, peak RSS, CPU, and the gap
   to the target of 50,000 records/s with all tables on one worker.

Nothing is deleted in Kafka: every topic name is unique to the run. Worker logs are
kept under ``--log-dir`` (default ``$TMPDIR/bench-logs``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

MOMENTS: Final = Path(sys.executable).with_name("moments")
TARGET_RPS: Final = 50_000.0
"""Project brief: 50,000 records/s with all tables on one worker."""

Guarantee = Literal["exactly_once", "at_least_once"]
GUARANTEES: Final[tuple[Guarantee, ...]] = ("exactly_once", "at_least_once")

# Plan mix of the accounts and the catalog's allotments the quantities are sized from
# (config/plans.toml), so a realistic share of accounts crosses its thresholds.
PLAN_WEIGHTS: Final = {"free": 0.2, "starter": 0.4, "growth": 0.3, "scale": 0.1}
LIMITS: Final[dict[str, dict[str, float]]] = {
    "free": {"api_calls": 1_000, "storage_gb": 1, "seats": 1, "events": 10_000},
    "starter": {"api_calls": 10_000, "storage_gb": 10, "seats": 3, "events": 100_000},
    "growth": {"api_calls": 100_000, "storage_gb": 100, "seats": 10, "events": 1_000_000},
    "scale": {"api_calls": 1_000_000, "storage_gb": 1_000, "seats": 50, "events": 10_000_000},
}
METRIC_SHARES: Final = {"api_calls": 0.55, "events": 0.30, "storage_gb": 0.10, "seats": 0.05}
INTEGRAL: Final = frozenset({"api_calls", "events", "seats"})
RFC3339_SHARE: Final = 0.15
SPREAD_MS: Final = 50 * 60_000
"""Event times fall in the last 50 minutes: never late, never in the future."""

POLL_READY_S: Final = 0.1
POLL_METRICS_S: Final = 0.5
PROGRESS_EVERY_S: Final = 5.0
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
LOG_PREFIX: Final = re.compile(r"^(\[[^\]]*\]\s*\[\d+\]\s*|[\d\-]+ [\d:,.]+\s+)")
"""Faust's ``[time] [pid] `` or logging's ``date time `` at the start of a log line."""
NOTABLE: Final = re.compile(r"\b(ERROR|CRITICAL|WARNING|Traceback|[Rr]ebalanc\w*|Exception)\b")


# --------------------------------------------------------------------------- data


@dataclass(slots=True)
class Dataset:
    """What was published, so the worker's counts can be checked (not asserted)."""

    run_id: str
    usage_topic: str
    plans_topic: str
    partitions: int
    accounts: list[str]
    plans: dict[str, str]
    records: int = 0
    duplicates: int = 0
    quantity_total: float = 0.0


def usage_values(args: argparse.Namespace, data: Dataset) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(key, value)`` for every usage record; counts duplicates into ``data``."""
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data, not crypto
    now_ms = int(time.time() * 1000)
    per_account = args.records / len(data.accounts)
    # Per (account, metric): one quantity sized so that the account uses 20-110 % of its
    # allotment over the run (free/starter plans cross their near levels and some hit).
    sizes: dict[tuple[str, str], float] = {}
    for account in data.accounts:
        plan = data.plans[account]
        for metric, share in METRIC_SHARES.items():
            expected = max(1.0, per_account * share)
            sizes[account, metric] = LIMITS[plan][metric] * rng.uniform(0.2, 1.1) / expected
    metrics = list(METRIC_SHARES)
    weights = list(METRIC_SHARES.values())
    sent: dict[str, list[bytes]] = defaultdict(list)
    for i in range(args.records):
        account = data.accounts[rng.randrange(len(data.accounts))]
        earlier = sent[account]
        if earlier and rng.random() < args.duplicate_rate:
            # A producer retry: the same record (same record_id) once more.
            value = earlier[rng.randrange(len(earlier))]
            data.duplicates += 1
        else:
            metric = rng.choices(metrics, weights)[0]
            size = sizes[account, metric] * rng.uniform(0.5, 1.5)
            quantity: float = max(1, round(size)) if metric in INTEGRAL else round(size, 3)
            ts_ms = now_ms - rng.randrange(SPREAD_MS)
            timestamp: int | str = ts_ms
            if rng.random() < RFC3339_SHARE:
                timestamp = (
                    datetime.fromtimestamp(ts_ms / 1000, UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z")
                )
            value = orjson.dumps(
                {
                    "record_id": f"{data.run_id}-{i:09d}",
                    "account_id": account,
                    "metric": metric,
                    "quantity": quantity,
                    "timestamp": timestamp,
                    "attributes": {"region": "eu-west-1", "sdk": "bench/1"},
                }
            )
            earlier.append(value)
            data.quantity_total += quantity
        data.records += 1
        yield account.encode(), value


async def create_topics(bootstrap: str, data: Dataset) -> None:
    """Create the usage topic and the compacted plans topic, P partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(data.usage_topic, data.partitions, 1),
                NewTopic(
                    data.plans_topic,
                    data.partitions,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ]
        )
    finally:
        await admin.close()


async def publish(args: argparse.Namespace, data: Dataset) -> tuple[float, float]:
    """Publish plans, then usage; returns (usage seconds, usage records/s)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks=1,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        updated_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        for account in data.accounts:
            plan = {"account_id": account, "plan_id": data.plans[account], "updated_at": updated_at}
            await producer.send(data.plans_topic, orjson.dumps(plan), key=account.encode())
        await producer.flush()

        pending: list[asyncio.Future[Any]] = []
        started = time.perf_counter()
        for key, value in usage_values(args, data):
            pending.append(await producer.send(data.usage_topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return elapsed, data.records / elapsed


# ----------------------------------------------------------------------- baseline


async def baseline(args: argparse.Namespace, data: Dataset) -> tuple[float, float, int]:
    """Plain consumer loop over the usage topic; returns (seconds, records/s, accounts)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(data.usage_topic, p) for p in range(data.partitions)])
        await consumer.seek_to_beginning()
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        started = time.perf_counter()
        deadline = started + args.timeout
        while seen < data.records and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    sums[record["account_id"]] += record["quantity"]
                seen += len(messages)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    if seen < data.records:
        print(f"  baseline read only {seen} of {data.records} records in {elapsed:.0f}s")
    return elapsed, seen / elapsed, len(sums)


# ------------------------------------------------------------------------- worker


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET on the worker; (0, "") when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310 - fixed http URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {series: value} (series with its labels)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            continue
    return out


def total(series: dict[str, float], name: str) -> float:
    """Sum of every series of metric ``name`` (over its labels)."""
    return sum(v for k, v in series.items() if k == name or k.startswith(name + "{"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def broker_pid() -> int | None:
    """The local broker's pid (scripts/kafka-local), if it left a pid file."""
    state = Path(os.environ.get("KAFKA_LOCAL_DIR", tempfile.gettempdir() + "/usage-moments-kafka"))
    try:
        pid = int((state / "kafka.pid").read_text().split()[0])
        cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None
    return pid


@dataclass(slots=True)
class WorkerRun:
    """Figures of one worker run."""

    guarantee: Guarantee
    log_path: Path
    ready_s: float = float("nan")
    done_s: float = float("nan")
    processed: float = 0.0
    at_ready: float = 0.0
    rate: float = 0.0
    cpu_s: float = 0.0
    cpu_window_s: float = 0.0
    cpu_wall_s: float = 0.0
    """Wall time the CPU figures cover (less than done_s when the worker died mid-run)."""
    broker_cpu_window_s: float | None = None
    machine_busy_pct: float = 0.0
    peak_rss_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)
    outcomes: dict[str, float] = field(default_factory=dict)
    events: float = 0.0
    batches: float = 0.0
    batch_s: float = 0.0
    rebalances: float | None = None
    exit_code: int | None = None
    stop_s: float = 0.0
    finished: bool = False
    note: str = ""
    notable: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def worker_env(
    args: argparse.Namespace, data: Dataset, app_id: str, **extra: str
) -> dict[str, str]:
    """The worker's environment: ours without MOMENTS_*, plus the bench settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update(
        MOMENTS_KAFKA_BOOTSTRAP=args.bootstrap,
        MOMENTS_APP_ID=app_id,
        MOMENTS_TOPIC_USAGE=data.usage_topic,
        MOMENTS_TOPIC_ACCOUNTS=data.plans_topic,
        MOMENTS_TOPIC_PREFIX=f"{app_id}.moments",
        MOMENTS_PARTITIONS=str(data.partitions),
        MOMENTS_WEB_HOST="127.0.0.1",
        MOMENTS_WEB_ADVERTISED_HOST="127.0.0.1",
        MOMENTS_WEB_PORT=str(free_port()),
        MOMENTS_LOG_LEVEL="info",
    )
    if args.batch_size is not None:
        env["MOMENTS_BATCH_SIZE"] = str(args.batch_size)
    env.update(extra)
    return env


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_worker(args: argparse.Namespace, data: Dataset, guarantee: Guarantee) -> WorkerRun:
    """Start one worker on the backlog and time it until every record is counted."""
    app_id = f"bench-{data.run_id}-{guarantee.replace('_', '-')}"
    log_path = Path(args.log_dir) / f"{app_id}.log"
    run = WorkerRun(guarantee, log_path)
    data_dir = Path(tempfile.mkdtemp(prefix=f"{app_id}-"))
    env = worker_env(
        args,
        data,
        app_id,
        MOMENTS_DATA_DIR=str(data_dir),
        MOMENTS_PROCESSING_GUARANTEE=guarantee,
    )
    port = int(env["MOMENTS_WEB_PORT"])
    kafka = broker_pid()
    proc: subprocess.Popen[bytes] | None = None
    print(f"\n[{guarantee}] app id {app_id}, port {port}, log {log_path}")
    try:
        with log_path.open("wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen([str(MOMENTS), "worker"], env=env, stdout=log, stderr=log)
        pid = proc.pid
        deadline = started + args.timeout
        while http_get(port, "/readyz")[0] != 200:
            if proc.poll() is not None:
                run.note = f"worker exited with {proc.returncode} before ready"
                return run
            if time.monotonic() > deadline:
                run.note = "not ready before --timeout"
                return run
            time.sleep(POLL_READY_S)
        ready_at = time.monotonic()
        run.ready_s = ready_at - started
        cpu_at_ready = cpu_seconds(pid)
        broker_at_ready = cpu_seconds(kafka) if kafka else None
        busy_at_ready = machine_busy()
        run.at_ready = total(parse_metrics(http_get(port, "/metrics")[1]), "moments_records_total")
        print(f"  ready after {run.ready_s:.1f}s ({run.at_ready:.0f} records already counted)")

        last = (ready_at, run.at_ready, cpu_at_ready)
        cpu_until = ready_at
        last_progress = (ready_at, run.at_ready)
        series: dict[str, float] = {}
        while True:
            time.sleep(POLL_METRICS_S)
            now = time.monotonic()
            if proc.poll() is not None:
                run.note = f"worker exited with {proc.returncode} while processing"
                break
            status, body = http_get(port, "/metrics")
            if status == 200:
                series = parse_metrics(body)
                run.processed = total(series, "moments_records_total")
            if run.processed >= data.records:
                run.done_s = now - ready_at
                run.finished = True
                break
            if run.processed > last_progress[1]:
                last_progress = (now, run.processed)
            elif now - last_progress[0] > args.stall:
                run.note = f"no progress for {args.stall:.0f}s"
                break
            if now > deadline:
                run.note = "--timeout reached"
                break
            if now - last[0] >= PROGRESS_EVERY_S:
                cpu = cpu_seconds(pid)
                rss = status_kb(pid, "VmRSS") / 1024
                run.rss_samples_mb.append(rss)
                # Kept up to date so a worker that dies mid-run still leaves figures.
                run.cpu_s, run.cpu_window_s = cpu, cpu - cpu_at_ready
                run.peak_rss_mb = status_kb(pid, "VmHWM") / 1024
                cpu_until = now
                print(
                    f"  t+{now - ready_at:6.1f}s  {run.processed:9.0f} records"
                    f"  {(run.processed - last[1]) / (now - last[0]):8.0f} rec/s"
                    f"  cpu {100 * (cpu - last[2]) / (now - last[0]):4.0f}%"
                    f"  rss {rss:6.0f} MB"
                )
                last = (now, run.processed, cpu)
        end = time.monotonic()
        if proc.poll() is None:
            cpu_until = end
            run.cpu_s = cpu_seconds(pid)
            run.cpu_window_s = run.cpu_s - cpu_at_ready
            run.peak_rss_mb = status_kb(pid, "VmHWM") / 1024
            run.rss_samples_mb.append(status_kb(pid, "VmRSS") / 1024)
        if kafka and broker_at_ready is not None:
            run.broker_cpu_window_s = cpu_seconds(kafka) - broker_at_ready
        busy_end = machine_busy()
        run.machine_busy_pct = (
            100 * (busy_end[0] - busy_at_ready[0]) / max(1, busy_end[1] - busy_at_ready[1])
        )
        elapsed = run.done_s if run.finished else end - ready_at
        run.rate = run.processed / elapsed if elapsed > 0 else 0.0
        run.cpu_wall_s = cpu_until - ready_at
        if not run.finished:
            run.done_s = elapsed
        run.outcomes = {
            k.split('"')[1]: v for k, v in series.items() if k.startswith("moments_records_total{")
        }
        run.events = total(series, "moments_events_total")
        run.batches = series.get("moments_batch_seconds_count", 0.0)
        run.batch_s = series.get("moments_batch_seconds_sum", 0.0)
        if any(k.startswith("moments_rebalances_total") for k in series):
            run.rebalances = total(series, "moments_rebalances_total")
        return run
    finally:
        if proc is not None:
            stopping = time.monotonic()
            run.exit_code = stop_worker(proc)
            run.stop_s = time.monotonic() - stopping
        shutil.rmtree(data_dir, ignore_errors=True)
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                if NOTABLE.search(line):
                    text = LOG_PREFIX.sub("", line).strip()[:200]
                    # Lines that differ only in numbers count together.
                    shape = re.sub(r"\d+", "N", text)
                    run.notable[shape] += 1
                    run.examples.setdefault(shape, text)


def report_run(run: WorkerRun, data: Dataset) -> None:
    """Details of one worker run below its progress lines."""
    state = "done" if run.finished else f"STOPPED EARLY: {run.note}"
    print(
        f"  {state}: {run.processed:.0f}/{data.records} records in {run.done_s:.1f}s after"
        f" ready -> {run.rate:,.0f} rec/s"
    )
    if run.cpu_window_s:
        print(
            f"  worker CPU {run.cpu_window_s:.1f}s over {run.cpu_wall_s:.1f}s"
            f" ({100 * run.cpu_window_s / max(run.cpu_wall_s, 1e-9):.0f}% of one core),"
            f" {run.cpu_s:.1f}s since start; machine busy {run.machine_busy_pct:.0f}%"
            f" of {os.cpu_count()} CPUs"
            + (
                f"; broker CPU {run.broker_cpu_window_s:.1f}s"
                if run.broker_cpu_window_s is not None
                else ""
            )
        )
    if run.rss_samples_mb:
        rss = ", ".join(f"{v:.0f}" for v in run.rss_samples_mb)
        print(f"  RSS samples (MB): {rss}; peak (VmHWM) {run.peak_rss_mb:.0f} MB")
    expected_dup = data.duplicates
    print(
        f"  outcomes {dict(sorted(run.outcomes.items()))} (published: "
        f"{data.records - expected_dup} distinct + {expected_dup} repeats);"
        f" events {run.events:.0f}; rebalances {run.rebalances}"
    )
    if run.batches:
        print(
            f"  {run.batches:.0f} usage batches, {run.processed / run.batches:.0f} records each"
            f" on average, {1000 * run.batch_s / run.batches:.0f} ms each; inside"
            f" process_batch {run.batch_s:.1f}s of the {run.done_s:.1f}s"
            f" ({100 * run.batch_s / max(run.done_s, 1e-9):.0f}%)"
        )
    print(f"  stopped with SIGTERM in {run.stop_s:.1f}s, exit status {run.exit_code}")
    if run.notable:
        print(f"  notable log lines ({sum(run.notable.values())}):")
        for shape, count in run.notable.most_common(8):
            print(f"    {count:5d} x {run.examples[shape]}")


# --------------------------------------------------------------------------- main


def table_row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    """One fixed-width row: the first cell left-aligned, the others right-aligned."""
    first, *rest = cells
    return f"{first:<{widths[0]}}" + "".join(
        f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True)
    )


def source_version() -> str:
    """The commit of the worker being measured, marked dirty when the tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + (" (dirty tree)" if dirty else "")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="usage records (N)")
    parser.add_argument("--accounts", type=int, default=2_000, help="accounts (A)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (P)")
    parser.add_argument(
        "--guarantee", choices=("both", *GUARANTEES), default="both", help="worker configs"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="MOMENTS_BATCH_SIZE")
    parser.add_argument("--duplicate-rate", type=float, default=0.03, help="share of repeats")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the data")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("MOMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap (default: $MOMENTS_KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds a worker run may take at most"
    )
    parser.add_argument(
        "--stall", type=float, default=120.0, help="give up after this long without progress"
    )
    parser.add_argument(
        "--log-dir",
        default=str(Path(tempfile.gettempdir()) / "bench-logs"),
        help="where worker logs are kept",
    )
    args = parser.parse_args()
    if args.records < 1 or args.accounts < 1 or args.partitions < 1:
        parser.error("--records, --accounts and --partitions must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)  # noqa: S311 - reproducible test data, not crypto
    accounts = [f"acct-{i:06d}" for i in range(args.accounts)]
    plans = {a: rng.choices(list(PLAN_WEIGHTS), list(PLAN_WEIGHTS.values()))[0] for a in accounts}
    data = Dataset(
        run_id=run_id,
        usage_topic=f"bench-{run_id}.usage",
        plans_topic=f"bench-{run_id}.plans",
        partitions=args.partitions,
        accounts=accounts,
        plans=plans,
    )
    print(
        f"bench {run_id}: {args.records} records, {args.accounts} accounts, "
        f"{args.partitions} partitions, broker {args.bootstrap}, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, worker at {source_version()}"
    )

    asyncio.run(create_topics(args.bootstrap, data))
    produce_s, produce_rps = asyncio.run(publish(args, data))
    print(
        f"produced {data.records} usage records ({data.duplicates} repeats) to"
        f" {data.usage_topic} in {produce_s:.1f}s -> {produce_rps:,.0f} rec/s"
        f" (after {len(accounts)} plans to {data.plans_topic})"
    )
    base_s, base_rps, base_accounts = asyncio.run(baseline(args, data))
    print(
        f"baseline aiokafka loop: {data.records} records in {base_s:.1f}s ->"
        f" {base_rps:,.0f} rec/s ({base_accounts} accounts summed)"
    )

    chosen = GUARANTEES if args.guarantee == "both" else (args.guarantee,)
    runs: list[WorkerRun] = []
    for guarantee in chosen:
        run = run_worker(args, data, guarantee)
        report_run(run, data)
        runs.append(run)

    header = ("configuration", "rec/s", "x base", "ready s", "peak RSS MB", "CPU s", "CPU %")
    widths = (28, 10, 8, 9, 13, 8, 7, 11)
    print()
    print(table_row((*header, "of target"), widths))
    print(
        table_row(
            (
                "baseline aiokafka loop",
                f"{base_rps:,.0f}",
                "1.00",
                "",
                "",
                "",
                "",
                f"{base_rps / TARGET_RPS:.0%}",
            ),
            widths,
        )
    )
    for run in runs:
        cpu_pct = 100 * run.cpu_window_s / run.cpu_wall_s if run.cpu_wall_s > 0 else 0.0
        label = f"worker {run.guarantee}" + ("" if run.finished else " (partial)")
        cells = (
            label,
            f"{run.rate:,.0f}",
            f"{run.rate / base_rps:.3f}",
            f"{run.ready_s:.1f}",
            f"{run.peak_rss_mb:.0f}",
            f"{run.cpu_s:.1f}",
            f"{cpu_pct:.0f}",
            f"{run.rate / TARGET_RPS:.1%}",
        )
        print(table_row(cells, widths))
    print(f"\ntarget: {TARGET_RPS:,.0f} records/s with all tables on one worker")
    for run in runs:
        if run.rate > 0:
            print(
                f"  {run.guarantee}: {run.rate:,.0f} rec/s is {TARGET_RPS / run.rate:.1f}x"
                f" short of it ({TARGET_RPS - run.rate:,.0f} rec/s to find)"
            )
    print(
        "(CPU s: worker utime+stime from start to the last record; CPU %: worker CPU"
        " while processing, 100 = one core)"
    )
    return 0 if all(run.finished for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
