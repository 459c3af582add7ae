"""Bearer-token access to the endpoints that show account data or move the clock.

With ``MOMENTS_WEB_TOKEN`` set, ``/accounts/{id}`` and ``/clock`` answer only requests
carrying ``Authorization: Bearer <token>``; ``/metrics``, ``/healthz``, ``/readyz`` and
``/status`` (operational figures only: partitions, lag, sizes, readiness) stay open for
probes and scrapes. The comparison takes constant time (``hmac.compare_digest``) and the
token is never logged. A worker forwarding ``/accounts`` to the partition's owner passes
the request's headers on (Faust's router does), so the owner checks the same token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, Final, TypeVar

from faust.web import Request, Response, View

SCHEME: Final = "Bearer"
#: What a 401 says in its WWW-Authenticate header (RFC 6750).
CHALLENGE: Final = 'Bearer realm="usage-moments"'

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Response]])


def authorized(headers: Mapping[str, str], token: str | None) -> bool:
    """Whether ``headers`` carry ``token`` as a bearer token (always, without a token)."""
    if token is None:
        return True
    scheme, _, given = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        # Still one comparison, so a missing header takes as long as a wrong token.
        hmac.compare_digest(token.encode(), b"")
        return False
    return hmac.compare_digest(token.encode(), given.strip().encode())


def guarded(token: str | None) -> Callable[[_Handler], _Handler]:
    """Decorate a view method so it answers 401 unless the request carries ``token``."""

    def decorate(handler: _Handler) -> _Handler:
        if token is None:
            return handler

        @wraps(handler)
        async def check(self: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            if not authorized(request.headers, token):
                return self.json(
                    {"error": "this endpoint needs Authorization: Bearer <MOMENTS_WEB_TOKEN>"},
                    status=401,
                    headers={"WWW-Authenticate": CHALLENGE},
                )
            return await handler(self, request, *args, **kwargs)

        return check  # type: ignore[return-value]  # same signature as the handler

    return decorate
