"""Without ``MOMENTS_WEB_TOKEN`` account data answers the worker's own host only (issue 16,
item 12).

A worker binds ``0.0.0.0`` by default; with no token, ``/accounts/{id}`` and ``/clock``
must refuse any client that is not on the worker's host (403, naming the setting) while
``/metrics``, ``/healthz`` and ``/readyz`` stay open to everyone. Forwarding between
workers of one host (``make run``, these tests) keeps working without a token.

The off-host client here is this machine itself, connecting to its own non-loopback
address: the worker then sees that address as its peer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from agents.usage import key_partition
from tests.integration.conftest import Stack, eventually
from tests.integration.test_operator_views import _owner_ports

pytestmark = pytest.mark.integration


def _host_address() -> str | None:
    """This machine's address on its outgoing interface (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks a route, sends nothing
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


def _get(host: str, port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as resp:  # noqa: S310
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


async def test_without_a_token_account_data_answers_loopback_only(stack: Stack) -> None:
    address = _host_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to come from")
    await stack.create_inputs()
    worker = stack.worker("w1", MOMENTS_WEB_HOST="0.0.0.0").start()  # noqa: S104 - the default
    await worker.ready()
    await stack.plan("acme")

    for path in ("/accounts/acme", "/clock"):
        status, body = await asyncio.to_thread(_get, address, worker.port, path)
        assert status == 403, (path, status, body)
        assert "MOMENTS_WEB_TOKEN" in body["error"], body
    for path in ("/metrics", "/healthz", "/readyz"):
        status, body = await asyncio.to_thread(_get, address, worker.port, path)
        assert status == 200, (path, status, body)

    async def local_view() -> Any:
        status, body = await asyncio.to_thread(_get, "127.0.0.1", worker.port, "/accounts/acme")
        assert status != 403, body
        return body if status == 200 else None

    body = await eventually(local_view, timeout=60)
    assert body["account_id"] == "acme"
    status, _ = await asyncio.to_thread(_get, "127.0.0.1", worker.port, "/clock")
    assert status == 200


async def test_without_a_token_workers_of_one_host_forward_to_each_other(stack: Stack) -> None:
    await stack.create_inputs()
    w1 = stack.worker("w1").start()
    w2 = stack.worker("w2").start()
    await asyncio.gather(w1.ready(), w2.ready())
    owners = await _owner_ports([w1, w2])
    accounts = {
        key_partition(f"acct-{i}".encode(), stack.partitions): f"acct-{i}" for i in range(20)
    }
    for account in accounts.values():
        await stack.plan(account)
    remote = next(a for p, a in accounts.items() if owners[p] == w2.port)  # w2's, asked at w1

    async def view() -> Any:
        status, body = await asyncio.to_thread(_get, "127.0.0.1", w1.port, f"/accounts/{remote}")
        assert status != 403, body
        return body if status == 200 else None

    body = await eventually(view, timeout=60)
    assert body["account_id"] == remote
