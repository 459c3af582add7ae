"""What a caller gets when ``/accounts`` must be answered by a worker that cannot be reached.

Faust's topic routing forwards the request to the worker owning the account's partition.
While the fleet changes (a worker just died, a rebalance is under way) that worker may not
answer: Faust then lets aiohttp's connection error escape, which became a 500 and a logged
traceback per request (a test polling during a takeover logged hundreds). The caller gets a
503 instead, which says "retry", and the log one debug line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import aiohttp
from faust.web import Request, Response, View

logger = logging.getLogger(__name__)

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Response]])

UNREACHABLE = (
    "the worker owning this account's partition did not answer (it may be restarting, or "
    "the partition moving to another worker); retry in a few seconds"
)


def owner_unreachable_is_503(handler: _Handler) -> _Handler:
    """Decorate a routed view method: a forward that cannot connect answers 503."""

    @wraps(handler)
    async def call(self: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(self, request, *args, **kwargs)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            logger.debug("%s: forwarding failed (%r); answered 503", request.url, exc)
            return self.json({"error": UNREACHABLE}, status=503)

    return call  # type: ignore[return-value]  # same signature as the handler
