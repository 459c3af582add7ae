"""One attempt: a signed POST of an event to an endpoint, with a timeout (aiohttp).

Redirects are not followed (a 3xx is an answer, dead-lettered: the signed body would go to a
URL nobody configured). The body read back is cut at what a dead letter keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from domain.delivery.endpoints import shown_url
from domain.delivery.records import EXCERPT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Answer:
    """What an attempt got: a status (None: no answer), the start of the body, the
    ``Retry-After`` header, and the error when there was no answer."""

    status: int | None
    body: bytes = b""
    retry_after: str | None = None
    error: str = ""

    @property
    def result(self) -> str:
        """The attempt's label in ``moments_delivery_attempts_total``."""
        if self.status is not None:
            return f"{self.status // 100}xx"
        return "timeout" if self.error.startswith("timeout") else "error"


class HttpPoster:
    """POSTs with one shared aiohttp session (its connection pool is reused)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer:
        """POST ``body``; never raises for a failure of the network or the endpoint."""
        try:
            async with self.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                try:
                    excerpt = await response.content.read(EXCERPT_MAX_BYTES)
                except (aiohttp.ClientError, TimeoutError):
                    excerpt = b""
                return Answer(response.status, excerpt, response.headers.get("Retry-After"))
        except TimeoutError:
            return Answer(None, error=f"timeout after {timeout_s:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(None, error=without_url(f"{type(exc).__name__}: {exc}", url))


def without_url(text: str, url: str) -> str:
    """``text`` (an error of aiohttp, which may quote the URL as given or normalised by yarl)
    with the URL shown as :func:`shown_url`: its path, query or user info may hold a token."""
    forms = {url}
    try:
        forms.add(str(URL(url)))
    except ValueError:
        pass  # a URL yarl refuses is quoted as given
    shown = shown_url(url)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, shown)
    return text


def new_session() -> aiohttp.ClientSession:
    """The deliverer's session: no cookies, no default timeout (each attempt sets its own)."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"user-agent": "usage-moments-deliver"},
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
    )


__all__ = ["Answer", "HttpPoster", "new_session", "without_url"]
