"""The bearer-token check of web.auth."""

from __future__ import annotations

import pytest

from web.auth import authorized

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
