"""A ``moments worker`` process: its environment, start, readiness, stop, HTTP.

The tests (tests/integration/conftest.py), ``scripts/bench.py`` and
``scripts/capacity.py`` wrap :class:`WorkerProcess` with what each of them reads.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.metrics import Metrics

MOMENTS = Path(sys.executable).with_name("moments")
"""The ``moments`` command of the running interpreter's environment."""
WORKER_COMMAND = (str(MOMENTS), "worker")
#: Settings the workers take from the test run's own environment, so one tier can be run
#: on either event loop (``MOMENTS_EVENT_LOOP=asyncio pytest tests/faults``).
PASSED_THROUGH = frozenset({"MOMENTS_EVENT_LOOP"})


def worker_env(
    *,
    bootstrap: str,
    app_id: str,
    data_dir: Path,
    port: int,
    usage_topic: str,
    plans_topic: str,
    partitions: int,
    **extra: str,
) -> dict[str, str]:
    """A worker's environment: this process's, without its ``MOMENTS_*`` variables but
    :data:`PASSED_THROUGH`, plus the app, its topics (events under ``<app_id>.moments``),
    its data dir, a loopback web port, and ``extra`` (full variable names)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_") or k in PASSED_THROUGH
    }
    env.update(
        MOMENTS_KAFKA_BOOTSTRAP=bootstrap,
        MOMENTS_APP_ID=app_id,
        MOMENTS_DATA_DIR=str(data_dir),
        MOMENTS_PARTITIONS=str(partitions),
        MOMENTS_WEB_HOST="127.0.0.1",
        MOMENTS_WEB_ADVERTISED_HOST="127.0.0.1",
        MOMENTS_WEB_PORT=str(port),
        MOMENTS_TOPIC_USAGE=usage_topic,
        MOMENTS_TOPIC_ACCOUNTS=plans_topic,
        MOMENTS_TOPIC_PREFIX=f"{app_id}.moments",
    )
    env.update(extra)
    return env


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` on 127.0.0.1:``port``: (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310 - fixed http URL
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


class NotReady(AssertionError):
    """A worker that exited (``exit_code``) or ran out of time (None) before ready."""

    def __init__(self, exit_code: int | None) -> None:
        self.exit_code = exit_code
        super().__init__(
            "not ready in time" if exit_code is None else f"exited with {exit_code} before ready"
        )


@dataclass
class WorkerProcess:
    """One worker process, logging stdout and stderr to ``log_path``."""

    env: dict[str, str]
    port: int
    log_path: Path
    command: list[str] = field(default_factory=lambda: list(WORKER_COMMAND))
    proc: subprocess.Popen[bytes] | None = None
    started: float = math.nan
    """``time.monotonic()`` at the last start."""

    def start(self, *, append: bool = False) -> None:
        """Start the process; ``append`` keeps the log of an earlier run of it."""
        with self.log_path.open("ab" if append else "wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(  # noqa: S603 - the worker command, no shell
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def exited(self) -> int | None:
        """The exit status once the process has ended (None while it runs or before start)."""
        return None if self.proc is None else self.proc.poll()

    def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` on the worker's web port."""
        return http_get(self.port, path)

    async def aget(self, path: str) -> tuple[int, bytes]:
        """:meth:`get` without blocking the event loop."""
        return await asyncio.to_thread(http_get, self.port, path)

    async def metrics(self) -> Metrics | None:
        """The worker's metrics, or None when ``/metrics`` does not answer 200."""
        status, body = await self.aget("/metrics")
        return Metrics(body.decode()) if status == 200 else None

    async def ready(self, deadline: float, *, poll_s: float = 0.1) -> float:
        """Wait for ``/readyz`` 200 until ``deadline`` (monotonic): seconds since start.

        Raises :class:`NotReady` when the process exits or the deadline passes first.
        """
        while (await self.aget("/readyz"))[0] != 200:
            if (code := self.exited()) is not None:
                raise NotReady(code)
            if time.monotonic() > deadline:
                raise NotReady(None)
            await asyncio.sleep(poll_s)
        return time.monotonic() - self.started

    def stop(self, timeout: float) -> tuple[int, bool]:
        """SIGTERM, then SIGKILL after ``timeout`` s: (exit status, whether it was killed)."""
        if self.proc is None:
            return 0, False
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, killed

    def kill(self) -> None:
        """SIGKILL, and reap the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        """The whole log ("" before the first start)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


class OnProcess:
    """The process's own facts, for a class built around one :class:`WorkerProcess`
    (the tests' worker, the bench's)."""

    process: WorkerProcess

    @property
    def env(self) -> dict[str, str]:
        """The worker's environment."""
        return self.process.env

    @property
    def port(self) -> int:
        """The worker's web port."""
        return self.process.port

    @property
    def log_path(self) -> Path:
        """The worker's log file."""
        return self.process.log_path

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The process of the last start (None before it)."""
        return self.process.proc

    @property
    def started(self) -> float:
        """``time.monotonic()`` at the last start."""
        return self.process.started
