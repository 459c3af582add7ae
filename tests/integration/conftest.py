"""Integration fixtures: real Kafka (from scripts/kafka-local), real worker processes.

Every test gets its own app id and topic names, so tests share one broker without
seeing each other's data. Workers are real ``moments worker`` processes configured
by environment variables, exactly as deployed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.harness import kafka
from tests.harness.metrics import Metrics
from tests.harness.ports import free_port
from tests.harness.process import MOMENTS, NotReady, OnProcess, WorkerProcess, worker_env

pytestmark = pytest.mark.integration

__all__ = ["BOOTSTRAP", "MOMENTS", "Stack", "Worker", "eventually", "free_port", "total_of"]

BOOTSTRAP = os.environ.get("MOMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(autouse=True)
def leaks_surface_in_their_own_test() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed client (an unraisable
    ResourceWarning, an error here) is reported by the test that left it, not by whichever
    test happens to run when the collector next passes (the suite flaked that way)."""
    yield
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def kafka_is_up() -> None:
    """Fail (not skip) when there is no broker: these tests claim Kafka behaviour."""
    host, _, port = BOOTSTRAP.partition(",")[0].rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(3)
        if sock.connect_ex((host, int(port))) != 0:
            pytest.fail(
                f"no Kafka broker at {BOOTSTRAP}: run `scripts/kafka-local start` "
                f"(or `make test`, which starts it)"
            )


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 45.0, interval: float = 0.3
) -> Any:
    """Await ``probe`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


class Worker(OnProcess):
    """One ``moments worker`` process of a test: the harness's process, read the way
    tests read it (JSON bodies, metrics that must exist, waits that fail the test)."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.process = WorkerProcess(env=env, port=port, log_path=log_path)

    def start(self) -> Worker:
        """Start the process; a restarted worker's log goes on after its earlier runs."""
        self.process.start(append=True)
        return self

    async def get(self, path: str) -> tuple[int, Any]:
        """GET an endpoint: (status, parsed JSON or text); (0, None) when nothing answers."""
        status, body = await self.process.aget(path)
        if status == 0:
            return 0, None
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, body.decode()

    async def ready(self, timeout: float = 90.0) -> Worker:
        """Wait for ``/readyz`` 200; fail with the log when the worker exits or is late."""
        try:
            await self.process.ready(time.monotonic() + timeout, poll_s=0.3)
        except NotReady as not_ready:
            raise AssertionError(f"worker {not_ready} (within {timeout}s):\n{self.log()}") from None
        return self

    async def metrics(self) -> Metrics:
        """One scrape of ``/metrics`` (fails unless it answers 200)."""
        metrics = await self.process.metrics()
        assert metrics is not None, f"/metrics of the worker on port {self.port} did not answer"
        return metrics

    async def metric(self, name: str, **labels: str) -> float:
        """The value of ``name{labels}`` now; a series that does not exist fails the test."""
        return (await self.metrics()).value(name, **labels)

    async def metric_becomes(
        self, name: str, want: float, *, timeout: float = 30.0, **labels: str
    ) -> None:
        """Wait until the worker's ``name{labels}`` is ``want``; fail if it never is.

        Counters move when a step's commit returns to the worker, which can be a moment
        after a read_committed consumer already sees the step's events (the broker writes
        the commit markers as it answers): a test that saw the events must wait for the
        count, not read it once. A counter that must stay 0 is 0 at the first poll: read
        it once the condition that makes 0 meaningful holds instead.
        """
        last: list[float] = []

        async def equal() -> bool:
            last[:] = [await self.metric(name, **labels)]
            return last[0] == want

        try:
            await eventually(equal, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"{name}{labels} is {last}, not {want}") from None

    def log(self) -> str:
        return self.process.log_text()[-6000:]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, SIGKILL after ``timeout``: the exit status (0 when never started)."""
        return self.process.stop(timeout)[0]

    def kill(self) -> None:
        self.process.kill()


@dataclass
class Stack:
    """Names of one test's app and topics, and helpers to talk to them."""

    tmp: Path
    app_id: str = field(default_factory=lambda: f"it-{uuid.uuid4().hex[:10]}")
    partitions: int = 2
    #: Brokers of this stack: the shared one unless a test runs its own.
    bootstrap: str = BOOTSTRAP
    workers: list[Worker] = field(default_factory=list)
    _producer: AIOKafkaProducer | None = None

    @property
    def usage_topic(self) -> str:
        return f"{self.app_id}.usage"

    @property
    def plans_topic(self) -> str:
        return f"{self.app_id}.plans"

    @property
    def prefix(self) -> str:
        return f"{self.app_id}.moments"

    def env(self, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
        return worker_env(
            bootstrap=self.bootstrap,
            app_id=self.app_id,
            data_dir=data_dir,
            port=port,
            usage_topic=self.usage_topic,
            plans_topic=self.plans_topic,
            partitions=self.partitions,
            **{"MOMENTS_COMMIT_INTERVAL": "200ms", "MOMENTS_LOG_LEVEL": "info", **extra},
        )

    def worker(self, name: str = "w1", *, data_dir: Path | None = None, **extra: str) -> Worker:
        port = free_port()
        data = data_dir or self.tmp / name
        worker = Worker(self.env(data, port, **extra), port, self.tmp / f"{name}.log")
        self.workers.append(worker)
        return worker

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await self._producer.start()
        return self._producer

    async def create_topics(
        self, counts: dict[str, int], compact: set[str] | frozenset[str] = frozenset()
    ) -> None:
        await kafka.create_topics(self.bootstrap, counts, compact=compact)

    async def create_inputs(self) -> None:
        """Create the input topics, as producers would before any worker runs."""
        await self.create_topics(
            {self.usage_topic: self.partitions, self.plans_topic: self.partitions},
            compact={self.plans_topic},
        )

    async def send(self, topic: str, key: str | bytes | None, value: Any) -> None:
        producer = await self.producer()
        raw_key = key.encode() if isinstance(key, str) else key
        raw_value = value if isinstance(value, bytes | None) else orjson.dumps(value)
        await producer.send_and_wait(topic, key=raw_key, value=raw_value)

    async def plan(self, account_id: str, plan_id: str = "starter", **fields: Any) -> None:
        record = {
            "account_id": account_id,
            "plan_id": plan_id,
            "updated_at": "2026-01-01T00:00:00Z",
        }
        record.update(fields)
        await self.send(self.plans_topic, account_id, record)

    async def usage(
        self,
        account_id: str,
        record_id: str,
        quantity: float = 1,
        metric: str = "api_calls",
        timestamp: int | str | None = None,
        key: str | None = None,
    ) -> None:
        record = {
            "record_id": record_id,
            "account_id": account_id,
            "metric": metric,
            "quantity": quantity,
            "timestamp": timestamp if timestamp is not None else int(time.time() * 1000),
        }
        await self.send(self.usage_topic, key if key is not None else account_id, record)

    async def read(self, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
        """Read ``count`` committed messages of ``topic`` from the start (fails on fewer)."""
        consumer = await kafka.committed_reader(topic, self.bootstrap)
        out: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    out.extend(messages)
        finally:
            await consumer.stop()
        assert len(out) >= count, f"read {len(out)} of {count} messages from {topic}"
        return out

    async def read_all(self, topic: str, *, settle_s: float = 2.0) -> list[Any]:
        """Every committed message of ``topic``, once none arrived for ``settle_s``."""
        consumer = await kafka.committed_reader(topic, self.bootstrap)
        out: list[Any] = []
        try:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < settle_s:
                batch = await consumer.getmany(timeout_ms=300)
                for messages in batch.values():
                    out.extend(messages)
                    quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return out

    async def account(self, worker: Worker, account_id: str) -> dict[str, Any] | None:
        status, body = await worker.get(f"/accounts/{account_id}")
        return body if status == 200 else None

    async def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self._producer is not None:
            await self._producer.stop()


def total_of(view: dict[str, Any] | None, metric: str = "api_calls") -> float | None:
    """Current-period total of ``metric`` in an /accounts view (None when absent)."""
    if not view:
        return None
    periods = view["period_totals"].get(metric) or []
    return periods[-1]["total"] if periods else None


def show_logs_if_failed(stack: Stack, request: pytest.FixtureRequest) -> None:
    """Write every worker's log to stderr when the test's call failed."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for worker in stack.workers:
            sys.stderr.write(f"--- {worker.log_path.name}\n{worker.log()}\n")


@pytest.fixture
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A fresh, isolated set of topics and workers on the shared broker."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        await s.close()
        show_logs_if_failed(s, request)
