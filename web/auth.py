"""Who may read account data or move the clock: a bearer token, or else loopback only.

With ``MOMENTS_WEB_TOKEN`` set, ``/accounts/{id}`` and ``/clock`` answer only requests
carrying ``Authorization: Bearer <token>`` (401 otherwise). Without it (the default) they
answer only clients on the worker's own host (a loopback peer address: ``127.0.0.0/8``,
``::1``); any other client gets 403 with a body that names ``MOMENTS_WEB_TOKEN``, since the
worker binds ``0.0.0.0`` by default and account data must not be open to the network.
``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` (operational figures only:
partitions, lag, sizes, readiness) stay open for probes and scrapes either way.

The comparison takes constant time (``hmac.compare_digest``) and the token is never
logged. A worker forwarding ``/accounts`` to the partition's owner passes the request's
headers on (Faust's router does), so the owner checks the same token; without a token
the owner sees the forwarding worker as its client, so forwarding works only between
workers on one host (``make run``, tests): a fleet across hosts needs the token, which
the deployment files require.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, Final, TypeVar

from faust.web import Request, Response, View

SCHEME: Final = "Bearer"
#: What a 401 says in its WWW-Authenticate header (RFC 6750).
CHALLENGE: Final = 'Bearer realm="usage-moments"'
#: What a client that is not on the worker's host gets without a token (403).
LOOPBACK_ONLY: Final = (
    "without MOMENTS_WEB_TOKEN this endpoint answers clients on the worker's own host only "
    "(loopback); set MOMENTS_WEB_TOKEN on every worker and send "
    "Authorization: Bearer <MOMENTS_WEB_TOKEN> to reach it from elsewhere"
)

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


def is_loopback(remote: str | None) -> bool:
    """Whether the peer address ``remote`` is a loopback one (IPv4-mapped IPv6 included).

    Anything else, or no address at all, is not.
    """
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])  # "fe80::1%eth0": zone id
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def peer_address(request: Request) -> str | None:
    """The address of the connection's peer (aiohttp's ``Request.remote``).

    The socket's peer, not a header: ``X-Forwarded-For`` and the like are not read.
    """
    remote = getattr(request, "remote", None)
    return remote if isinstance(remote, str) else None


def guarded(token: str | None) -> Callable[[_Handler], _Handler]:
    """Decorate a view method: 401 without ``token``, or 403 off-host when there is none."""

    def decorate(handler: _Handler) -> _Handler:
        @wraps(handler)
        async def check(self: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            if token is None:
                if not is_loopback(peer_address(request)):
                    return self.json({"error": LOOPBACK_ONLY}, status=403)
            elif not authorized(request.headers, token):
                return self.json(
                    {"error": "this endpoint needs Authorization: Bearer <MOMENTS_WEB_TOKEN>"},
                    status=401,
                    headers={"WWW-Authenticate": CHALLENGE},
                )
            return await handler(self, request, *args, **kwargs)

        return check  # type: ignore[return-value]  # same signature as the handler

    return decorate
