"""The bearer-token check of web.auth."""

from __future__ import annotations

from typing import Any

import pytest

from web.auth import authorized, guarded, is_loopback

TOKEN = "s3cret-token-0123456789"  # noqa: S105 - a test value


def test_no_token_configured_lets_everything_through() -> None:
    assert authorized({}, None)
    assert authorized({"Authorization": "Bearer anything"}, None)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"  Bearer   {TOKEN}  ",
    ],
)
def test_the_right_token_is_accepted(header: str) -> None:
    assert authorized({"Authorization": header}, TOKEN)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer "},
        {"X-Token": TOKEN},
    ],
)
def test_anything_else_is_refused(headers: dict[str, str]) -> None:
    assert not authorized(headers, TOKEN)


# ---------------------------------------------------------------- issue 16, item 12: no token


class _View:
    """What ``guarded`` uses of a faust View: ``json``."""

    def json(self, value: Any, *, status: int = 200, headers: Any = None) -> Any:
        return (status, value)


class _Transport:
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default


def _request(peer: Any, headers: dict[str, str] | None = None) -> Any:
    """A real aiohttp request whose connection comes from ``peer``."""
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("GET", "/accounts/acme", headers=headers, transport=_Transport(peer))


async def _answer(token: str | None, peer: Any, headers: dict[str, str] | None = None) -> Any:
    @guarded(token)
    async def handler(self: Any, request: Any) -> Any:
        return (200, {"account_id": "acme"})

    return await handler(_View(), _request(peer, headers))


@pytest.mark.parametrize(
    "peer",
    [("127.0.0.1", 50000), ("127.8.9.10", 50000), ("::1", 50000, 0, 0), ("::ffff:127.0.0.1", 1)],
)
async def test_without_a_token_loopback_clients_are_answered(peer: Any) -> None:
    assert await _answer(None, peer) == (200, {"account_id": "acme"})


@pytest.mark.parametrize(
    "peer",
    [
        ("192.0.2.7", 50000),
        ("10.0.0.5", 50000),
        ("0.0.0.0", 50000),  # noqa: S104 - a peer address, not a bind
        ("fd00::2", 50000, 0, 0),
        ("::ffff:10.0.0.5", 1),
        None,  # no peer address known (not a TCP connection): refused too
    ],
)
async def test_without_a_token_other_clients_get_403_naming_the_setting(peer: Any) -> None:
    status, body = await _answer(None, peer)
    assert status == 403
    assert "MOMENTS_WEB_TOKEN" in body["error"]
    assert "loopback" in body["error"]


async def test_a_forwarded_for_header_does_not_make_a_client_local() -> None:
    status, _ = await _answer(None, ("192.0.2.7", 50000), {"X-Forwarded-For": "127.0.0.1"})
    assert status == 403


async def test_with_a_token_the_address_does_not_matter() -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await _answer(TOKEN, ("192.0.2.7", 50000), bearer))[0] == 200
    assert (await _answer(TOKEN, ("127.0.0.1", 50000)))[0] == 401  # loopback needs it too


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("fe80::1%eth0", False), ("", False), ("x", False)],
)
def test_is_loopback(remote: str, loopback: bool) -> None:
    assert is_loopback(remote) is loopback
