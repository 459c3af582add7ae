"""Chaos fixtures: a three-node KRaft cluster of this tier's own (scripts/kafka-local's
cluster commands), which the tests stop and start node by node.

The cluster runs the release in KAFKA_VERSION (default 3.9.1). Node N listens on
CHAOS_KAFKA_PORT+2(N-1) (default 9192: 9192, 9194, 9196) and its controller on the
port after it; its state lives in a temporary directory, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - a fixture, registered by import
    Stack,
    leaks_surface_in_their_own_test,
    show_logs_if_failed,
)

KAFKA_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"
NODES = 3


@dataclass
class Cluster:
    """A local three-node cluster (scripts/kafka-local cluster-*, node-* N)."""

    port: int
    state_dir: Path

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + 2 * i}" for i in range(NODES))

    def run(self, *command: str) -> str:
        env = dict(
            os.environ,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.port + 1),
            KAFKA_LOCAL_DIR=str(self.state_dir),
            KAFKA_NODES=str(NODES),
            KAFKA_HEAP_OPTS=os.environ.get("CHAOS_KAFKA_HEAP_OPTS", "-Xmx512m -Xms128m"),
            # A node restarted after SIGKILL recovers its logs first; on a loaded
            # 2-core machine that and the readiness probe's JVM can take minutes.
            KAFKA_START_TIMEOUT=os.environ.get("KAFKA_START_TIMEOUT", "300"),
        )
        done = subprocess.run(  # noqa: S603
            [str(KAFKA_LOCAL), *command], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"kafka-local {' '.join(command)}:\n{done.stderr}"
        return done.stdout

    def server_log(self, node: int) -> Path:
        return self.state_dir / f"node-{node}" / "logs" / "server.log"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(int(os.environ.get("CHAOS_KAFKA_PORT", "9192")), tmp_path / "kafka")
    await asyncio.to_thread(c.run, "cluster-start")
    try:
        yield c
    finally:
        await asyncio.to_thread(c.run, "cluster-stop")


@pytest.fixture
async def stack(
    tmp_path: Path, cluster: Cluster, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """The integration tier's Stack (names, workers, helpers), on the cluster."""
    s = Stack(tmp_path, bootstrap=cluster.bootstrap)
    try:
        yield s
    finally:
        await s.close()
        show_logs_if_failed(s, request)
