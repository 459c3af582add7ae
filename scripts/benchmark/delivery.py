"""Section ``delivery``: one ``moments deliver`` process POSTing every event to a local
receiver (aiohttp on loopback, in the bench's process, verifying each signature with
``standardwebhooks`` like the tests' receiver, ``tests/harness/receiver.py``).

Two figures, on one deliverer (its default batch size and concurrency), one endpoint that
wants every built-in kind, fresh event topics of ``--partitions`` partitions:

- **deliveries/s**: ``--delivery-events`` events published as fast as the producer goes once
  the deliverer is ready (a new group starts at the end of the event topics, so nothing is
  published before); distinct events received per second, from the first send to the last
  first arrival.
- **latency at a steady rate**: then ``--delivery-rate`` events/s (1,000) offered for
  ``--delivery-seconds``; per event, its first arrival at the receiver minus the moment it
  was handed to the producer (which is also its ``emitted_at``, to the millisecond: the span
  the deliverer's ``moments_delivery_latency_seconds`` observes, up to the receiver's side).
  p50/p90/p99/max.

The events are the guide's examples (``scripts/gen-event-examples.py``, made by the domain's
builders), each with a fresh ``event_id``, the account of its round-robin turn, and
``emitted_at`` = now. The receiver shares the bench's event loop with the producer: its
CPU is the bench's, reported on the CPU line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from benchmark.latency import percentile
from benchmark.report import Report, report_worker
from benchmark.workers import POLL_METRICS_S, CpuMeter, Worker
from benchmark.workload import make_dataset
from domain.common.timeutil import to_rfc3339
from domain.wording.kinds import KINDS
from state import jsonbytes
from tests.harness.ports import free_port
from tests.harness.process import MOMENTS, WorkerProcess
from tests.harness.receiver import Received, ScriptedReceiver

ROOT: Final = Path(__file__).resolve().parents[2]
FIGURE: Final = 9
"""The rows' figure number in the final table (after the engine's)."""
ENDPOINT: Final = "bench"
PATH: Final = f"/{ENDPOINT}"


def templates() -> list[dict[str, Any]]:
    """The guide's example events of the built-in kinds, one per example."""
    spec = importlib.util.spec_from_file_location(
        "gen_event_examples", ROOT / "scripts" / "gen-event-examples.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("scripts/gen-event-examples.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    examples: dict[str, dict[str, Any]] = module.examples()
    return [e for e in examples.values() if e["kind"] in KINDS]


def bench_event(template: Mapping[str, Any], account: str, n: int, now_ms: int) -> dict[str, Any]:
    """``template`` as a new event: id ``<run>-<n>``-like, ``account``'s, emitted ``now_ms``."""
    return {
        **template,
        "event_id": f"{n:012d}{template['event_id'][12:]}",
        "account_id": account,
        "emitted_at": to_rfc3339(now_ms),
    }


def first_arrivals(received: Iterable[Received]) -> dict[str, float]:
    """Each webhook id's first arrival (``time.time()``), among the answered 2xx."""
    first: dict[str, float] = {}
    for r in received:
        if 200 <= r.answered < 300:
            first.setdefault(r.webhook_id, r.at)
    return first


def latencies(sent_at: Mapping[str, float], arrived: Mapping[str, float]) -> list[float]:
    """Sorted (first arrival - send time) of the events both sent and arrived."""
    return sorted(arrived[i] - sent for i, sent in sent_at.items() if i in arrived)


def due(elapsed_s: float, rate: float, total: int) -> int:
    """How many events a steady ``rate``/s has offered after ``elapsed_s`` (at most
    ``total``): one at the start, then one every 1/rate s."""
    return min(total, int(elapsed_s * rate) + 1)


def deliverer_env(
    args: argparse.Namespace, app_id: str, endpoints: Path, port: int
) -> dict[str, str]:
    """The deliverer's environment: this process's without ``MOMENTS_*``, plus its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update(
        MOMENTS_KAFKA_BOOTSTRAP=args.bootstrap,
        MOMENTS_APP_ID=app_id,
        MOMENTS_TOPIC_PREFIX=f"{app_id}.moments",
        MOMENTS_PARTITIONS=str(args.partitions),
        MOMENTS_WEB_HOST="127.0.0.1",
        MOMENTS_DELIVER_WEB_PORT=str(port),
        MOMENTS_ENDPOINTS_FILE=str(endpoints),
        MOMENTS_LOG_LEVEL="info",
    )
    return env


class Publisher:
    """Sends bench events to their kind's topic, keyed by account; remembers send times."""

    def __init__(self, producer: AIOKafkaProducer, prefix: str, accounts: Sequence[str]) -> None:
        self.producer = producer
        self.prefix = prefix
        self.accounts = accounts
        self.templates = templates()
        self.sent_at: dict[str, float] = {}
        self.count = 0

    async def send(self) -> asyncio.Future[Any]:
        n = self.count
        self.count += 1
        now = time.time()
        event = bench_event(
            self.templates[n % len(self.templates)],
            self.accounts[n % len(self.accounts)],
            n,
            int(now * 1000),
        )
        future: asyncio.Future[Any] = await self.producer.send(
            f"{self.prefix}.{event['kind']}",
            jsonbytes.dumps(event),
            key=event["account_id"].encode(),
        )
        self.sent_at[event["event_id"]] = now
        return future

    async def burst(self, count: int) -> None:
        """``count`` events as fast as the producer takes them."""
        pending = [await self.send() for _ in range(count)]
        await asyncio.gather(*pending)

    async def paced(self, rate: float, seconds: float) -> tuple[int, float]:
        """``rate`` events/s for ``seconds``: (events sent, seconds taken)."""
        total = int(rate * seconds)
        pending: list[asyncio.Future[Any]] = []
        started = time.monotonic()
        sent = 0
        while sent < total:
            target = due(time.monotonic() - started, rate, total)
            while sent < target:
                pending.append(await self.send())
                sent += 1
            if len(pending) >= 1_000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.002)
        await asyncio.gather(*pending)
        return total, time.monotonic() - started


async def wait_for(
    receiver: ScriptedReceiver, ids: Iterable[str], w: Worker, deadline: float
) -> tuple[dict[str, float], str]:
    """Until every id arrived (or the deliverer exits, or ``deadline``): (first arrivals, why
    not all)."""
    want = set(ids)
    while True:
        arrived = first_arrivals(receiver.at(PATH))
        if want <= arrived.keys():
            return arrived, ""
        if (code := w.exited()) is not None:
            return arrived, f"deliverer exited with {code}"
        if time.monotonic() > deadline:
            missing = len(want - arrived.keys())
            return arrived, f"{missing:,} of {len(want):,} not delivered by --max-seconds"
        await asyncio.sleep(POLL_METRICS_S)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f} ms"


async def delivery(args: argparse.Namespace, run_id: str, report: Report) -> None:
    """Section ``delivery`` (see the module)."""
    app_id = f"bench-{run_id}-deliver"
    data = make_dataset(args, run_id, "delivery", min(args.accounts, 500))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = await ScriptedReceiver({PATH: [secret]}).start()
    log_dir = Path(args.log_dir)
    endpoints = log_dir / f"{app_id}-endpoints.toml"
    endpoints.write_text(
        "[[endpoints]]\n"
        f'name = "{ENDPOINT}"\nurl = "{receiver.url(PATH)}"\nkinds = ["*"]\n'
        f'secret_env = "BENCH_DELIVER_SECRET"\n'
    )
    port = free_port()
    w = Worker(args, data, app_id, "at_least_once", "deliverer")
    w.process = WorkerProcess(
        env=deliverer_env(args, app_id, endpoints, port) | {"BENCH_DELIVER_SECRET": secret},
        port=port,
        log_path=log_dir / f"{app_id}.log",
        command=[str(MOMENTS), "deliver"],
    )
    burst, rate, seconds = args.delivery_events, args.delivery_rate, args.delivery_seconds
    print(
        f"\n[delivery] app id {app_id}, port {port}, log {w.log_path}; receiver"
        f" {receiver.url(PATH)}; {burst:,} events as fast as possible, then {rate:,.0f}"
        f" events/s for {seconds:.0f}s, over {len(data.accounts)} accounts"
    )
    producer: AIOKafkaProducer | None = None
    meter: CpuMeter | None = None
    note = ""
    throughput: tuple[int, float] | None = None
    steady: list[float] = []
    steady_note = ""
    offered = (0, 0.0)
    kept = 0.0
    try:
        w.start()
        note = await w.wait_ready(w.started + args.max_seconds)
        if not note:
            print(f"  ready after {w.ready_s:.1f}s")
            producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=5)
            await producer.start()
            pub = Publisher(producer, w.prefix, data.accounts)
            meter = CpuMeter([w])
            first_send = time.time()
            await pub.burst(burst)
            published_s = time.time() - first_send
            arrived, note = await wait_for(
                receiver, pub.sent_at, w, time.monotonic() + args.max_seconds
            )
            if arrived:
                span = max(arrived.values()) - first_send
                throughput = (len(arrived), span)
                print(
                    f"  burst: {burst:,} events published in {published_s:.1f}s; {len(arrived):,}"
                    f" delivered in {span:.1f}s -> {len(arrived) / span:,.0f} deliveries/s"
                    f" ({len(receiver.at(PATH)):,} requests, every one verified:"
                    f" {all(r.verified for r in receiver.at(PATH))})"
                )
            if not note:
                pub.sent_at.clear()
                offered = await pub.paced(rate, seconds)
                arrived, steady_note = await wait_for(
                    receiver, pub.sent_at, w, time.monotonic() + args.max_seconds
                )
                steady = latencies(pub.sent_at, arrived)
                mine = [arrived[i] for i in pub.sent_at if i in arrived]
                if mine:
                    kept = len(mine) / max(1e-9, max(mine) - min(pub.sent_at.values()))
            meter.stop()
    finally:
        if producer is not None:
            await producer.stop()
        await w.stop()
        w.remove_state()
        await receiver.stop()
    if meter is not None:
        print(f"  {meter.text()}")
        report.other_load("delivery", meter)
        requests = len(receiver.at(PATH))
        if meter.worker_s and requests:
            per = 1e6 * meter.worker_s[0] / requests
            print(f"  deliverer CPU per request: {per:,.0f} us ({requests:,} requests)")
            report.add(FIGURE, "deliverer CPU per webhook request", f"{per:,.0f} us", "- (none)",
                       "(no target; CPU time, steadier than rates on a busy machine)")  # fmt: skip
    report_worker(w)
    _report(report, throughput, steady, steady_note or note, offered, (rate, kept))


def _report(
    report: Report,
    throughput: tuple[int, float] | None,
    steady: list[float],
    note: str,
    offered: tuple[int, float],
    rates: tuple[float, float],
) -> None:
    """The rows of the final table; ``rates``: (offered, kept) of the steady phase."""
    rate, kept = rates
    fig = "webhook deliveries/s to a local receiver (burst)"
    if throughput is None or throughput[1] <= 0:
        report.failed(FIGURE, fig, "- (none)", note or "nothing delivered")
        return
    count, span = throughput
    report.add(FIGURE, fig, f"{count / span:,.0f}/s", "- (none)", "(no target)")
    sent, took = offered
    fig = f"delivery latency, event -> webhook received, at {rate:,.0f} events/s offered"
    if not steady:
        report.failed(FIGURE, f"{fig}, p99", "- (none)", note or "nothing delivered")
        return
    print(
        f"  steady: offered {sent:,} events in {took:.1f}s -> {sent / took:,.0f}/s;"
        f" {len(steady):,} delivered{f' ({note})' if note else ''}; latency event -> first"
        f" arrival: p50 {ms(percentile(steady, 0.5))}, p90 {ms(percentile(steady, 0.9))},"
        f" p99 {ms(percentile(steady, 0.99))}, max {ms(steady[-1])}; the deliverer kept"
        f" {kept:,.0f} deliveries/s from the first send to the last"
    )
    bound = " (lower bound: not all delivered)" if note else ""
    if kept < 0.95 * rate:
        report.add(
            FIGURE,
            "delivery: rate the deliverer kept during the steady phase",
            f"{kept:,.0f}/s",
            f"{rate:,.0f}/s",
            "FELL BEHIND: the latency includes a growing backlog",
        )
    report.add(
        FIGURE, f"{fig}, p50", ms(percentile(steady, 0.5)) + bound, "- (none)", "(no target)"
    )
    report.add(
        FIGURE, f"{fig}, p99", ms(percentile(steady, 0.99)) + bound, "- (none)", "(no target)"
    )
    if sent / took < 0.95 * rate:
        report.add(
            FIGURE,
            "delivery: offered rate actually achieved",
            f"{sent / took:,.0f}/s",
            f"{rate:,.0f}/s",
            "the bench's producer could not keep the pace",
        )
