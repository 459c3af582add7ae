"""Measure the figures of docs/capacity.md: state bytes per account and per dedup key,
changelog bytes, and restore seconds per GB of changelog, with one real worker.

Run with a broker up whose data directory this script can read (the local one)::

    .venv/bin/python scripts/capacity.py --bootstrap 127.0.0.1:19800 \
        --kafka-data-dir /tmp/kafka-deploy/data --accounts 10000 --port 19802

What it does, on fresh topics and a fresh app id (nothing is deleted from Kafka):

1. publishes one plan per account and ``--records-per-account`` usage records per
   account on average (the bench's generator, scripts/benchmark/workload.py: four
   metrics, event times in the last 50 minutes, no repeats, so every record is one
   dedup key);
2. starts ONE exactly_once ``moments worker`` and waits until it has counted every
   record (``moments_records_total``), then reads ``moments_table_keys``;
3. stops it with SIGTERM and measures its data directory twice: as left (``du``,
   write-ahead logs included) and per column family after a flush and a full
   compaction (RocksDB's live SST files: the steady size of what it holds);
4. measures every changelog topic of the app on the broker's disk (its partition
   directories' log segments) and counts its records;
5. starts a second worker with the same app id and an EMPTY data directory and times
   process start to ``/readyz`` 200 (the tables rebuilt from the changelogs);
   Peak RSS (VmHWM) of both workers is read before they stop;
6. prints the figures and writes them as JSON (``--out``).

Times are upper bounds: the machine (2 cores) is shared with the broker and with
whatever else runs. Sizes do not depend on the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import admin, workload  # noqa: E402 - scripts/benchmark, beside this file
from rocksdict import Rdict  # noqa: E402

from state.store import StoreOptions  # noqa: E402
from tests.harness.meters import disk_usage, status_kb  # noqa: E402
from tests.harness.metrics import Metrics  # noqa: E402
from tests.harness.process import NotReady, WorkerProcess, worker_env  # noqa: E402

DEDUP_COLUMNS = frozenset({"dedup", "dedup-expiry"})
"""Column families whose size follows the number of dedup keys, not accounts."""
POLL_S = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--bootstrap", default=os.environ.get("MOMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    p.add_argument(
        "--kafka-data-dir",
        type=Path,
        default=Path(os.environ.get("KAFKA_LOCAL_DIR", "/tmp/usage-moments-kafka")) / "data",  # noqa: S108 - kafka-local's default
        help="the broker's log.dirs (scripts/kafka-local: $KAFKA_LOCAL_DIR/data)",
    )
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--records-per-account", type=float, default=10.0)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--port", type=int, default=6066, help="the worker's HTTP port")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--max-seconds", type=float, default=1800.0)
    p.add_argument(
        "--stall-seconds", type=float, default=90.0, help="restart a worker this long stuck"
    )
    p.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument(
        "--worker-command",
        default=f"{Path(sys.executable).parent / 'moments'} worker",
        help="how to start a worker",
    )
    return p.parse_args(argv)


class Proc:
    """One ``moments worker`` process on a fixed port, logging to a file."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.process = WorkerProcess(
            env=env, port=args.port, log_path=log, command=shlex.split(args.worker_command)
        )

    def start(self) -> None:
        """Start the worker."""
        self.process.start()

    def wait_ready(self) -> float:
        """Seconds from process start to /readyz 200; raises if it exits or takes too long."""
        deadline = self.process.started + self.args.max_seconds
        try:
            return asyncio.run(self.process.ready(deadline))
        except NotReady as not_ready:
            raise SystemExit(f"worker {not_ready}; log: {self.process.log_path}") from None

    def metrics(self) -> Metrics:
        """The worker's metrics (exits when it does not answer)."""
        metrics = asyncio.run(self.process.metrics())
        if metrics is None:
            raise SystemExit(f"/metrics did not answer; log: {self.process.log_path}")
        return metrics

    def peak_rss_mb(self) -> float:
        """VmHWM of the running process, in MB."""
        assert self.process.proc is not None  # noqa: S101 - started first
        return status_kb(self.process.proc.pid, "VmHWM") / 1024

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL after 60 s. Returns the exit status."""
        return self.process.stop(60)[0]


def capacity_env(
    args: argparse.Namespace, data: workload.Dataset, app_id: str, data_dir: Path
) -> dict[str, str]:
    """The environment of a worker of this run."""
    return worker_env(
        bootstrap=args.bootstrap,
        app_id=app_id,
        data_dir=data_dir,
        port=args.port,
        usage_topic=data.usage_topic,
        plans_topic=data.plans_topic,
        partitions=data.partitions,
        MOMENTS_STANDBY_REPLICAS="0",
    )


def column_family_bytes(state_root: Path) -> dict[str, int]:
    """Live SST bytes per column family over every partition DB, after flush + compaction."""
    sizes: dict[str, int] = defaultdict(int)
    options = StoreOptions(cache_mb=64, write_buffer_mb=4).options()
    for db_path in sorted(p for p in state_root.iterdir() if p.is_dir()):
        families = Rdict.list_cf(str(db_path), options)
        db = Rdict(str(db_path), options, column_families={cf: options for cf in families})
        try:
            for cf in families:
                handle = db.get_column_family(cf)
                handle.flush()
                handle.compact_range(None, None)
                sizes[cf] += handle.property_int_value("rocksdb.total-sst-files-size") or 0
        finally:
            db.close()
    return dict(sizes)


def changelog_bytes(kafka_data: Path, app_id: str) -> dict[str, int]:
    """Bytes of log segments per changelog topic of ``app_id`` on the broker's disk."""
    pattern = re.compile(rf"^({re.escape(app_id)}-.*changelog)-(\d+)$")
    sizes: dict[str, int] = defaultdict(int)
    for part in kafka_data.iterdir():
        match = pattern.match(part.name)
        if match:
            sizes[match.group(1)] += sum(f.stat().st_size for f in part.glob("*.log"))
    return dict(sizes)


def table_keys(metrics: Metrics) -> dict[str, int]:
    """``moments_table_keys`` by table."""
    return {k: int(v) for k, v in metrics.by_label("moments_table_keys", "table").items()}


async def publish(
    args: argparse.Namespace, data: workload.Dataset, count: int
) -> tuple[float, int]:
    """Topics, plans and ``count`` usage records; (seconds, accounts with usage)."""
    await admin.create_topics(args.bootstrap, data)
    started = time.perf_counter()
    await workload.publish_plans(args.bootstrap, data)
    source = workload.UsageSource(data, count, args.seed, duplicate_rate=0.0)
    producer = workload.new_producer(args.bootstrap)
    await producer.start()
    try:
        await workload.send_all(producer, data.usage_topic, source.backlog(count))
    finally:
        await producer.stop()
    return time.perf_counter() - started, len(source.sent)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement once; print and optionally save the figures."""
    args = parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    app_id = f"capacity-{run_id}"
    count = round(args.accounts * args.records_per_account)
    data = workload.make_dataset(args, run_id, "capacity", args.accounts)
    print(
        f"run {run_id}: {args.accounts:,} accounts, {count:,} usage records, "
        f"{args.partitions} partitions"
    )
    publish_s, active = asyncio.run(publish(args, data, count))
    print(f"published in {publish_s:.1f} s ({active:,} accounts got usage)")

    data_dir = Path(tempfile.mkdtemp(prefix=f"{app_id}-a-"))
    first = Proc(args, capacity_env(args, data, app_id, data_dir), args.log_dir / f"{app_id}-a.log")
    first.start()
    ready_s = first.wait_ready()
    processing_started = time.monotonic()
    deadline = time.monotonic() + args.max_seconds
    last = 0
    restarts = 0
    progress_at = time.monotonic()
    while time.monotonic() < deadline:
        # Done when the group has committed every usage record: counters would restart
        # with a restarted process, committed offsets do not.
        committed = asyncio.run(admin.group_committed(args.bootstrap, app_id, data.usage_topic))
        if committed > last:
            last, progress_at = committed, time.monotonic()
        if committed >= count:
            break
        if time.monotonic() - progress_at > args.stall_seconds:
            # A worker whose partitions stalled (seen under heavy CPU contention: its
            # transactions timed out, it was fenced and abandoned them with no other
            # worker to take them) is restarted on the same data dir: sizes are what
            # this script measures, and exactly-once keeps them exact across restarts.
            restarts += 1
            print(f"no progress for {args.stall_seconds:.0f} s at {last:,}: restarting")
            first.stop()
            first.start()
            first.wait_ready()
            progress_at = time.monotonic()
        time.sleep(POLL_S * 4)
    else:
        first.stop()
        raise SystemExit(f"the group committed {last:,} of {count:,} records in time")
    processed_s = time.monotonic() - processing_started
    # Let the last step's state land and the key estimates refresh (every 5 s).
    time.sleep(6)
    keys = table_keys(first.metrics())
    peak_rss_mb = first.peak_rss_mb()
    exit_code = first.stop()
    du_bytes, _ = disk_usage(data_dir)
    cf_bytes = column_family_bytes(data_dir / "state")
    shutil.rmtree(data_dir, ignore_errors=True)
    changelogs = changelog_bytes(args.kafka_data_dir, app_id)

    rebuild_dir = Path(tempfile.mkdtemp(prefix=f"{app_id}-b-"))
    second = Proc(
        args, capacity_env(args, data, app_id, rebuild_dir), args.log_dir / f"{app_id}-b.log"
    )
    # The first worker left the group cleanly (SIGTERM): the second joins at once.
    second.start()
    rebuild_s = second.wait_ready()
    time.sleep(6)  # the key estimates refresh every 5 s
    rebuilt_keys = table_keys(second.metrics())
    rebuild_rss_mb = second.peak_rss_mb()
    second.stop()
    shutil.rmtree(rebuild_dir, ignore_errors=True)

    per_key = sum(v for k, v in cf_bytes.items() if k in DEDUP_COLUMNS)
    per_account = sum(v for k, v in cf_bytes.items() if k not in DEDUP_COLUMNS)
    dedup_keys = keys.get("dedup", 0)
    changelog_total = sum(changelogs.values())
    figures: dict[str, Any] = {
        "run_id": run_id,
        "accounts": args.accounts,
        "accounts_with_usage": active,
        "records": count,
        "partitions": args.partitions,
        "worker_ready_s": round(ready_s, 2),
        "processing_s": round(processed_s, 2),
        "records_per_s": round(count / processed_s) if processed_s > 0 else None,
        "first_exit_code": exit_code,
        "stall_restarts": restarts,
        "peak_rss_mb": round(peak_rss_mb),
        "rebuild_peak_rss_mb": round(rebuild_rss_mb),
        "table_keys": keys,
        "rebuilt_table_keys": rebuilt_keys,
        "data_dir_du_bytes": du_bytes,
        "column_family_bytes": cf_bytes,
        "account_state_bytes": per_account,
        "dedup_state_bytes": per_key,
        "bytes_per_account": round(per_account / args.accounts, 1),
        "bytes_per_dedup_key": round(per_key / dedup_keys, 1) if dedup_keys else None,
        "changelog_bytes": changelogs,
        "changelog_total_bytes": changelog_total,
        "rebuild_s": round(rebuild_s, 2),
        "rebuild_s_per_gb": round(rebuild_s / (changelog_total / 1e9), 1)
        if changelog_total
        else None,
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
