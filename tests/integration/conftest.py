"""Integration fixtures: real Kafka (from scripts/kafka-local), real worker processes.

Every test gets its own app id and topic names, so tests share one broker without
seeing each other's data. Workers are real ``moments worker`` processes configured
by environment variables, exactly as deployed.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

MOMENTS = Path(sys.executable).with_name("moments")
BOOTSTRAP = os.environ.get("MOMENTS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
# Spread by process, so two pytest runs on one machine rarely race for a port.
# TEST_PORTS=FIRST-LAST confines them to a range (a machine shared by several runs),
# reused round-robin: a stopped worker's port is free again.
_first, _, _last = os.environ.get("TEST_PORTS", "").partition("-")
_range = range(int(_first), int(_last) + 1) if _first and _last else None
_ports: Iterator[int] = (
    itertools.cycle(_range) if _range else itertools.count(16066 + (os.getpid() % 40) * 50)
)


def _free_port() -> int:
    for _ in _range or itertools.count():
        port = next(_ports)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError(f"every port of TEST_PORTS={os.environ['TEST_PORTS']} is taken")


def free_port() -> int:
    """A loopback port nothing listens on, for a worker or a server a test starts."""
    return _free_port()


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


def http_get(port: int, path: str) -> tuple[int, Any]:
    """GET a worker's endpoint; returns (status, parsed JSON or text)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode()


@dataclass
class Worker:
    """One ``moments worker`` process."""

    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [str(MOMENTS), "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    async def get(self, path: str) -> tuple[int, Any]:
        return await asyncio.to_thread(http_get, self.port, path)

    async def ready(self, timeout: float = 90.0) -> Worker:
        async def probe() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            status, _ = await self.get("/readyz")
            return status == 200

        await eventually(probe, timeout=timeout)
        return self

    async def metric(self, name: str, **labels: str) -> float:
        status, body = await self.get("/metrics")
        assert status == 200, body
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = f"{name}{{{want}}}" if labels else name
        for line in str(body).splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    async def metric_becomes(
        self, name: str, want: float, *, timeout: float = 30.0, **labels: str
    ) -> None:
        """Wait until the worker's ``name{labels}`` is ``want``; fail if it never is.

        Counters move when a step's commit returns to the worker, which can be a moment
        after a read_committed consumer already sees the step's events (the broker writes
        the commit markers as it answers): a test that saw the events must wait for the
        count, not read it once.
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
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def _committed_reader(topic: str, bootstrap: str = BOOTSTRAP) -> AIOKafkaConsumer:
    """A started, group-less read_committed consumer of ``topic`` from its start."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    return consumer


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
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
        env.update(
            MOMENTS_KAFKA_BOOTSTRAP=self.bootstrap,
            MOMENTS_APP_ID=self.app_id,
            MOMENTS_DATA_DIR=str(data_dir),
            MOMENTS_PARTITIONS=str(self.partitions),
            MOMENTS_WEB_HOST="127.0.0.1",
            MOMENTS_WEB_ADVERTISED_HOST="127.0.0.1",
            MOMENTS_WEB_PORT=str(port),
            MOMENTS_TOPIC_USAGE=self.usage_topic,
            MOMENTS_TOPIC_ACCOUNTS=self.plans_topic,
            MOMENTS_TOPIC_PREFIX=self.prefix,
            MOMENTS_COMMIT_INTERVAL="200ms",
            MOMENTS_LOG_LEVEL="info",
        )
        env.update(extra)
        return env

    def worker(self, name: str = "w1", *, data_dir: Path | None = None, **extra: str) -> Worker:
        port = _free_port()
        data = data_dir or self.tmp / name
        worker = Worker(self.env(data, port, **extra), port, self.tmp / f"{name}.log")
        self.workers.append(worker)
        return worker

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await self._producer.start()
        return self._producer

    async def create_topics(self, counts: dict[str, int], compact: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        n,
                        1,
                        topic_configs={"cleanup.policy": "compact"} if name in compact else {},
                    )
                    for name, n in counts.items()
                ]
            )
        finally:
            await admin.close()

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
        consumer = await _committed_reader(topic, self.bootstrap)
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
        consumer = await _committed_reader(topic, self.bootstrap)
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


@pytest.fixture
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A fresh, isolated set of topics and workers on the shared broker."""
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        await s.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for worker in s.workers:
                sys.stderr.write(f"--- {worker.log_path.name}\n{worker.log()}\n")
