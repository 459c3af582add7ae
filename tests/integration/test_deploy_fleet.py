"""The fleet settings of deploy/compose.yaml run as a real two-worker fleet.

tests/ops checks the deployment files without running them (no Docker engine in CI).
This test runs them: two real ``moments worker`` processes with the MOMENTS_*
settings of compose.yaml's two worker services (partitions, standby replicas, static
instance ids, shutdown timeout, guarantee, web token), only the host-specific ones
(broker address, app id and topic names, data dir, ports, advertised host) replaced
by this machine's, on the real broker. It checks what the compose file promises:
both workers become ready and split the 8 partitions between them, any worker
answers ``/accounts`` for any account (forwarded to the owner at its advertised
host), and SIGTERM stops each with status 0 within the file's ``stop_grace_period``.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.integration.conftest import Stack, Worker, eventually, free_port
from tests.ops.deploy_checks import compose_workers, duration_s, interpolate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
TOKEN = "fleet-test-token"  # noqa: S105 - made up for this test
#: Settings that name this machine rather than the fleet; the test supplies them.
HOST_SPECIFIC = {
    "MOMENTS_KAFKA_BOOTSTRAP",
    "MOMENTS_APP_ID",
    "MOMENTS_DATA_DIR",
    "MOMENTS_WEB_HOST",
    "MOMENTS_WEB_PORT",
    "MOMENTS_WEB_ADVERTISED_HOST",
    "MOMENTS_TOPIC_USAGE",
    "MOMENTS_TOPIC_ACCOUNTS",
    "MOMENTS_TOPIC_PREFIX",
}
ACCOUNTS = 96


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports nothing listens on now (the shared picker: TEST_PORTS)."""
    return [free_port() for _ in range(count)]


def compose_services() -> dict[str, dict[str, Any]]:
    """compose.yaml's worker services, interpolated as compose would."""
    env = {"MOMENTS_WEB_TOKEN": TOKEN, "GRAFANA_ADMIN_PASSWORD": "unused"}
    doc = interpolate(yaml.safe_load(COMPOSE.read_text()), env)
    return compose_workers(doc)


def get_with_token(port: int, path: str) -> tuple[int, Any]:
    """GET with the fleet's bearer token, as an operator would."""
    request = urllib.request.Request(  # noqa: S310 - fixed http URL on loopback
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return int(resp.status), orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


async def owned_partitions(worker: Worker, topic: str) -> set[int]:
    """Partitions of ``topic`` the worker reports lag for (its active assignment; no
    series at all while it owns none)."""
    lag = (await worker.metrics()).samples.get("moments_consumer_lag", {})
    return {int(labels["partition"]) for labels in map(dict, lag) if labels["topic"] == topic}


async def test_compose_fleet_settings_make_a_working_two_worker_fleet(
    stack: Stack, tmp_path: Path
) -> None:
    services = compose_services()
    assert sorted(services) == ["worker-1", "worker-2"]
    fleet = {
        name: {
            k: str(v)
            for k, v in svc["environment"].items()
            if k.startswith("MOMENTS_") and k not in HOST_SPECIFIC
        }
        for name, svc in services.items()
    }
    partitions = int(fleet["worker-1"]["MOMENTS_PARTITIONS"])
    stack.partitions = partitions
    await stack.create_inputs()
    workers: dict[str, Worker] = {}
    for (name, settings), port in zip(sorted(fleet.items()), free_ports(2), strict=True):
        env = stack.env(tmp_path / name, port, **settings)
        workers[name] = Worker(env, port, tmp_path / f"{name}.log")
        stack.workers.append(workers[name])
        workers[name].start()
    await asyncio.gather(*(w.ready(timeout=120) for w in workers.values()))

    for i in range(ACCOUNTS):
        await stack.plan(f"fleet-{i}")
    for i in range(ACCOUNTS):
        await stack.usage(f"fleet-{i}", f"rec-{i}", quantity=i + 1)

    # Every account answered by worker-1, owned by it or forwarded to worker-2.
    first = workers["worker-1"]

    async def all_answered() -> bool:
        for i in range(ACCOUNTS):
            status, view = await asyncio.to_thread(
                get_with_token, first.port, f"/accounts/fleet-{i}"
            )
            if status != 200:
                return False
            totals = view["period_totals"].get("api_calls") or []
            if not totals or totals[-1]["total"] != i + 1:
                return False
        return True

    await eventually(all_answered, timeout=90)

    # The 8 partitions split between the two workers, each owning some. (A worker
    # reports lag for a partition once it processed a record of it: 96 accounts leave
    # a partition without one with a chance of 2 in 100,000.)
    seen: list[dict[str, set[int]]] = []

    async def split() -> bool:
        owned = {n: await owned_partitions(w, stack.usage_topic) for n, w in workers.items()}
        seen.append(owned)
        union = set().union(*owned.values())
        disjoint = sum(len(p) for p in owned.values()) == len(union)
        return union == set(range(partitions)) and disjoint and all(owned.values())

    try:
        await eventually(split, timeout=90)
    except AssertionError:
        raise AssertionError(f"partitions not split between the workers: {seen[-1]}") from None

    # SIGTERM: each exits 0 within compose's stop_grace_period (before Docker's SIGKILL).
    grace = {n: duration_s(str(services[n]["stop_grace_period"])) for n in workers}

    def stop(name: str) -> tuple[int, float]:
        started = time.monotonic()
        code = workers[name].stop(timeout=grace[name] + 30)
        return code, time.monotonic() - started

    results = await asyncio.gather(*(asyncio.to_thread(stop, n) for n in workers))
    for name, (code, took) in zip(workers, results, strict=True):
        assert code == 0, f"{name} exited {code}:\n{workers[name].log()}"
        assert took < grace[name], f"{name} took {took:.1f} s, grace is {grace[name]:.0f} s"
