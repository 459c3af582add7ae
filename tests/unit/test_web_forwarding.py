"""A forward to an unreachable owner answers 503 (web.forwarding)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from web.forwarding import UNREACHABLE, owner_unreachable_is_503


class FakeView:
    def json(self, body: Any, status: int = 200) -> tuple[Any, int]:
        return body, status


class FakeRequest:
    url = "/accounts/a"


def test_a_forward_that_cannot_connect_answers_503() -> None:
    @owner_unreachable_is_503
    async def routed(view: Any, request: Any) -> Any:
        raise aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:16439")

    assert asyncio.run(routed(FakeView(), FakeRequest())) == ({"error": UNREACHABLE}, 503)


def test_an_answer_and_other_errors_pass_through() -> None:
    @owner_unreachable_is_503
    async def ok(view: Any, request: Any) -> Any:
        return "answer"

    @owner_unreachable_is_503
    async def bug(view: Any, request: Any) -> Any:
        raise KeyError("a bug is not an unreachable owner")

    assert asyncio.run(ok(FakeView(), FakeRequest())) == "answer"
    with pytest.raises(KeyError):
        asyncio.run(bug(FakeView(), FakeRequest()))
