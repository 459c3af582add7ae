"""Operator views on real workers: JSON logs, ``moments status`` and the web token.

Real ``moments worker`` processes against the real broker; ``moments status`` runs as
the command an operator types.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from agents.usage import key_partition
from tests.integration.conftest import MOMENTS, Stack, Worker, eventually

pytestmark = pytest.mark.integration

TOKEN = "it-token-0123456789abcdef"  # noqa: S105 - a test value
PASSWORD = "it-sasl-password-never-logged"  # noqa: S105 - a test value
PAYLOAD_MARKER = "raw-payload-marker-7f3a"

#: Faust's and aiokafka's lines that say nothing to an operator (app.logs.NOISE).
NOISE_MARKERS = (
    "]: Starting...",
    "Subscribed to topic",
    "Updating subscribed topics",
    "+---",
    "Discovered coordinator",
    "(Re-)joining group",
    "Executing _on_partitions_assigned",
    "Missing sensor state",
)


def _request(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            status, got, body = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, got, body = err.code, dict(err.headers), err.read()
    try:
        return status, got, json.loads(body)
    except ValueError:
        return status, got, body.decode(errors="replace")


async def _status(*urls: str) -> subprocess.CompletedProcess[str]:
    args = [str(MOMENTS), "status"] + [a for u in urls for a in ("--url", u)]
    return await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, timeout=60, check=False
    )


async def test_a_worker_logs_one_json_object_per_line_without_noise_or_secrets(
    stack: Stack,
) -> None:
    await stack.create_inputs()
    worker = stack.worker(
        "w1",
        MOMENTS_LOG_FORMAT="json",
        MOMENTS_SASL_PASSWORD=PASSWORD,
        MOMENTS_WEB_TOKEN=TOKEN,
    ).start()
    await worker.ready()
    await stack.plan("acct-json")
    await stack.usage("acct-json", "r1", 5)
    # Invalid records: dead-lettered, and their payload must not reach the log.
    await stack.send(stack.usage_topic, "acct-json", f"not json {PAYLOAD_MARKER}".encode())
    await stack.send(stack.usage_topic, "acct-json", {"record_id": PAYLOAD_MARKER})

    async def counted() -> bool:
        return await worker.metric("moments_records_total", outcome="invalid") >= 2

    await eventually(counted, timeout=60)
    assert worker.stop() == 0, worker.log()

    text = worker.log_path.read_text(errors="replace")
    lines = text.splitlines()
    assert len(lines) >= 3, text
    parsed = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(obj, dict), line
        assert {"time", "level", "logger", "message"} <= set(obj), line
        assert obj["time"].endswith("Z") and len(obj["time"]) == 24, line
        parsed.append(obj)
    messages = [o["message"] for o in parsed]
    for noise in NOISE_MARKERS:
        assert not any(noise in m for m in messages), f"{noise!r} logged:\n{text}"
    assert PASSWORD not in text
    assert TOKEN not in text
    assert PAYLOAD_MARKER not in text
    # The engine's own milestones are there, with the partition where they are about one.
    assert any("ready in" in m for m in messages), text
    assert any(o.get("partition") in (0, 1) for o in parsed), text
    assert any(m.startswith("engine stopped") for m in messages), text


async def _owner_ports(workers: list[Worker]) -> dict[int, int]:
    """Partition -> web port of the worker holding it actively, once both hold some."""

    async def probe() -> dict[int, int] | None:
        owners: dict[int, int] = {}
        for worker in workers:
            status, body = await worker.get("/status")
            if status != 200 or not body["ready"]:
                return None
            for partition in body["partitions"]["active"]:
                owners[partition] = worker.port
        return owners if len(set(owners.values())) == len(workers) else None

    found: dict[int, int] = await eventually(probe, timeout=90)
    return found


async def test_a_two_worker_fleet_status_and_token_guard(stack: Stack) -> None:
    await stack.create_inputs()
    w1 = stack.worker("w1", MOMENTS_WEB_TOKEN=TOKEN).start()
    w2 = stack.worker("w2", MOMENTS_WEB_TOKEN=TOKEN).start()
    await asyncio.gather(w1.ready(), w2.ready())
    owners = await _owner_ports([w1, w2])
    accounts = {
        key_partition(f"acct-{i}".encode(), stack.partitions): f"acct-{i}" for i in range(20)
    }
    assert set(accounts) == set(range(stack.partitions))
    for account in accounts.values():
        await stack.plan(account)
    remote = next(a for p, a in accounts.items() if owners[p] == w2.port)  # w2's, asked at w1
    local = next(a for p, a in accounts.items() if owners[p] == w1.port)

    # Without the token, or with a wrong one: 401 with a challenge, before any routing.
    for token in (None, "wrong-token-0123456789"):
        status, headers, body = await asyncio.to_thread(
            _request, w1.port, f"/accounts/{remote}", token
        )
        assert status == 401, body
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
    status, _, _ = await asyncio.to_thread(_request, w1.port, "/clock")
    assert status == 401

    # With it: the local account, and the remote one forwarded to w2 with the header.
    async def view(account: str) -> dict[str, Any] | None:
        status, _, body = await asyncio.to_thread(_request, w1.port, f"/accounts/{account}", TOKEN)
        return body if status == 200 else None

    for account in (local, remote):
        body = await eventually(lambda a=account: view(a), timeout=60)
        assert body["account_id"] == account
        assert body["plan"]["id"] == "starter"
    status, _, _ = await asyncio.to_thread(_request, w1.port, "/clock", TOKEN)
    assert status == 200

    # Probes, scrapes and /status stay open.
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        status, _, body = await asyncio.to_thread(_request, w1.port, path)
        assert status == 200, (path, body)

    # moments status, given one worker, finds both and reports them ready.
    url1, url2 = f"http://127.0.0.1:{w1.port}", f"http://127.0.0.1:{w2.port}"
    done = await _status(url1)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:3]}
    assert set(rows) == {url1, url2}, done.stdout
    assert all(row[1] == "yes" for row in rows.values()), done.stdout
    active = sorted(int(p) for row in rows.values() for p in row[2].split(","))
    assert active == list(range(stack.partitions)), done.stdout
    assert "2 workers" in done.stdout and "2 ready" in done.stdout

    # A worker that stops on purpose: status names it and exits non-zero.
    assert await asyncio.to_thread(w2.stop) == 0, w2.log()
    done = await _status(url1, url2)
    assert done.returncode == 1, done.stdout + done.stderr
    down = [line for line in done.stdout.splitlines() if line.startswith(url2)]
    assert down and down[0].split()[1] == "down", done.stdout
