"""Section ``deliver``: ``moments deliver`` POSTing to a local receiver (the tests' scripted
receiver, which verifies every signature with ``standardwebhooks``).

Two figures: deliveries per second of a burst of ``--deliver-backlog`` events published at
once while the deliverer runs (its group starts at the end of the event topics, so a backlog
published before it started would not be sent), from the first send to the last arrival;
and the latency from the moment an event is handed to the producer to its arrival
at the receiver, p50/p99, at a steady ``--deliver-rate`` (1,000) events/s for
``--deliver-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from benchmark.latency import percentile
from benchmark.report import Report, at_most
from tests.harness.deliver import deliver_env, deliver_process, write_endpoints
from tests.harness.ports import free_port
from tests.harness.receiver import ScriptedReceiver

TARGET_DELIVER_P99_S = 0.5
"""Event handed to Kafka to webhook received, p99, at a steady 1,000 events/s."""


def _event(account: str, n: int) -> dict[str, object]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "schema_version": 1,
        "event_id": f"{uuid.uuid4().hex}{n:010d}",
        "kind": "threshold-hit",
        "account_id": account,
        "plan": {"id": "starter", "name": "Starter", "price": 19, "currency": "USD"},
        "emitted_at": now,
    }


async def deliver(args: argparse.Namespace, run_id: str, report: Report) -> None:
    """Run the section; add its rows to ``report``."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = await ScriptedReceiver({"/bench": [secret]}).start()
    app_id = f"bench-deliver-{run_id}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-deliver-"))
    endpoints = write_endpoints(
        tmp / "endpoints.toml",
        [{"name": "bench", "url": receiver.url("/bench"), "kinds": ["*"],
          "secret_env": "BENCH_WEBHOOK_SECRET"}],
    )  # fmt: skip
    env = deliver_env(
        bootstrap=args.bootstrap,
        app_id=app_id,
        endpoints_file=endpoints,
        port=free_port(),
        BENCH_WEBHOOK_SECRET=secret,
        MOMENTS_LOG_LEVEL="warning",
        **(
            {"MOMENTS_DELIVER_CONCURRENCY": str(args.deliver_concurrency)}
            if args.deliver_concurrency
            else {}
        ),
    )
    process = deliver_process(env, Path(args.log_dir) / f"deliver-{run_id}.log")
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5)
    topic = f"{app_id}.moments.threshold-hit"
    try:
        process.start()
        await process.ready(time.monotonic() + args.max_seconds)
        await producer.start()
        # Backlog: every event at once, deliveries/s from the first send to the last arrival.
        count = args.deliver_backlog
        start = time.time()
        for n in range(count):
            event = _event(f"acct-{n % 500}", n)
            await producer.send(topic, orjson.dumps(event), key=str(event["account_id"]).encode())
        await producer.flush()
        deadline = time.monotonic() + args.max_seconds
        while len(receiver.received) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        got = len({r.webhook_id for r in receiver.received})
        last = max((r.at for r in receiver.received), default=start)
        rate = got / max(1e-9, last - start)
        print(f"deliver: {got:,}/{count:,} events of a backlog delivered -> {rate:,.0f}/s")
        report.add(9, "webhook deliveries/s, one deliverer, local receiver", f"{rate:,.0f}/s",
                   "- (reference)", "partial" if got < count else "measured")  # fmt: skip
        # Steady rate: latency from the send to the arrival.
        received_before = len(receiver.received)
        sent_at: dict[str, float] = {}
        interval = 1.0 / args.deliver_rate
        total = int(args.deliver_rate * args.deliver_seconds)
        begin = time.monotonic()
        for n in range(total):
            target = begin + n * interval
            if (wait := target - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            event = _event(f"acct-{n % 500}", count + n)
            sent_at[str(event["event_id"])] = time.time()
            await producer.send(topic, orjson.dumps(event), key=str(event["account_id"]).encode())
        await producer.flush()
        deadline = time.monotonic() + args.max_seconds
        while len(receiver.received) - received_before < total and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        latencies = sorted(
            r.at - sent_at[r.webhook_id] for r in receiver.received if r.webhook_id in sent_at
        )
        unverified = sum(1 for r in receiver.received if not r.verified)
        if not latencies:
            report.failed(9, "webhook delivery latency p99", f"< {TARGET_DELIVER_P99_S} s", "none")
            return
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(
            f"deliver: {len(latencies):,}/{total:,} events at {args.deliver_rate:,.0f}/s:"
            f" latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms;"
            f" {unverified} signature(s) not verified"
        )
        report.add(9, f"webhook delivery latency p99 at {args.deliver_rate:,.0f} events/s",
                   f"{p99 * 1000:.0f} ms", f"< {TARGET_DELIVER_P99_S * 1000:.0f} ms",
                   at_most(p99, TARGET_DELIVER_P99_S, "s", "{:.3f}"))  # fmt: skip
    finally:
        await producer.stop()
        cpu = _cpu_s(process.proc.pid) if process.proc is not None else None
        delivered = len(receiver.received)
        if cpu is not None and delivered:
            per = cpu / delivered * 1e6
            print(f"deliver: the deliverer used {cpu:.1f} s of CPU, {per:,.0f} us per delivery")
            report.add(9, "deliverer CPU per webhook delivery (start-up included)",
                       f"{per:,.0f} us", "- (reference)", "measured")  # fmt: skip
        process.stop(args.stop_timeout)
        await receiver.stop()


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc), None elsewhere."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
