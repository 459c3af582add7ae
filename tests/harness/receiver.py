"""A scripted webhook receiver on loopback (aiohttp) for the delivery tests and benchmark.

Each path answers per its script, one step per request, then 200 for ever: a status
(``500``), a status with headers (``Reply(429, {"Retry-After": "1"})``) or ``HANG`` (never
answers; the deliverer's timeout ends it). Every request is verified with the
``standardwebhooks`` library against the path's secrets, as a receiver would, and kept with
its arrival time, so tests check signatures, order, duplicates and latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.harness.ports import free_port


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


HANG: Final = Reply(-1)
"""A scripted step that never answers."""


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    webhook_id: str
    body: bytes
    headers: Mapping[str, str]
    verified: bool
    answered: int
    at: float
    """``time.time()`` of arrival."""

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


class ScriptedReceiver:
    """The receiver; ``await start()``, read ``url(path)`` and ``received``, ``await stop()``."""

    def __init__(self, secrets: Mapping[str, Sequence[str]]) -> None:
        #: Each path's secrets: a request verified by any of them counts as verified.
        self.secrets = {path: [Webhook(s) for s in keys] for path, keys in secrets.items()}
        self.scripts: dict[str, list[Reply | int]] = {}
        self.received: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._hanging: set[asyncio.Future[None]] = set()
        #: Seconds each answer waits before it is sent (a receiver that does some work).
        self.delay_s = 0.0

    def script(self, path: str, *steps: Reply | int) -> None:
        """The answers of ``path``'s next requests (then 200s)."""
        self.scripts[path] = list(steps)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        """The requests ``path`` received, in arrival order."""
        return [r for r in self.received if r.path == path]

    def ids(self, path: str, *, answered: int | None = 200) -> list[str]:
        """The webhook ids ``path`` received (only those answered ``answered``; None: all)."""
        return [r.webhook_id for r in self.at(path) if answered is None or r.answered == answered]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = False
        for hook in self.secrets.get(request.path, []):
            try:
                hook.verify(body, headers, json_parse=False)
                verified = True
            except WebhookVerificationError:
                pass
        steps = self.scripts.get(request.path, [])
        step = steps.pop(0) if steps else 200
        reply = step if isinstance(step, Reply) else Reply(step)
        self.received.append(
            Received(
                request.path,
                headers.get("webhook-id", ""),
                body,
                headers,
                verified,
                reply.status,
                time.time(),
            )
        )
        if reply is HANG:
            hang: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hanging.add(hang)
            try:
                await hang
            finally:
                self._hanging.discard(hang)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not verified:
            return web.Response(status=401, text="bad signature")
        return web.Response(status=reply.status, headers=dict(reply.headers), body=reply.body)

    async def start(self) -> ScriptedReceiver:
        self.port = free_port()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        for hang in list(self._hanging):
            hang.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
