"""``moments receive``: webhooks signed by the standardwebhooks library itself, through aiohttp.

The receiver's application is served by aiohttp's test server on loopback; each request is
signed with ``standardwebhooks.Webhook.sign`` (as any sender following the specification
would), or signed wrong, tampered with, or too old.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook

from commands.cli import build_parser
from commands.receive.serve import build_receiver, run_receive
from commands.receive.verify import Counts, Verifier
from domain.errors import ConfigError

# Test secrets, made up for these tests.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105
NEXT_SECRET = "whsec_c2Vjb25kLXNlY3JldC1vZi0yNA=="  # noqa: S105
OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW5vdC1vdXJz"  # noqa: S105
EVENT: dict[str, Any] = {
    "event_id": "1ef1b3da524db564b5406153a8fe39d988efe66414eb3b78eee6f0f81d80e10f",
    "kind": "threshold-hit",
    "account_id": "acct-0042",
    "message": {"title": "You've reached your API calls limit", "body": "..."},
}
BODY = orjson.dumps(EVENT)


def signed(
    body: bytes = BODY,
    secret: str = SECRET,
    *,
    at: datetime | None = None,
    webhook_id: str = EVENT["event_id"],
) -> dict[str, str]:
    """Standard Webhooks headers of ``body``, signed by the library itself."""
    when = at or datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, body),
        "content-type": "application/json",
    }


class Receiver:
    def __init__(self, client: TestClient[Any, Any], counts: Counts, out: io.StringIO) -> None:
        self.client = client
        self.counts = counts
        self.out = out

    async def post(self, body: bytes, headers: Mapping[str, str], path: str = "/") -> int:
        response = await self.client.post(path, data=body, headers=dict(headers))
        await response.read()
        return response.status

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    counts, out = Counts(), io.StringIO()
    app = build_receiver(Verifier([SECRET, NEXT_SECRET]), counts, out)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Receiver(client, counts, out)


async def test_a_correctly_signed_webhook_is_accepted_and_printed(receiver: Receiver) -> None:
    assert await receiver.post(BODY, signed(), path="/webhooks/moments") == 204
    assert receiver.lines() == [
        f"{EVENT['event_id']}  threshold-hit  acct-0042  You've reached your API calls limit"
    ]
    assert receiver.counts.as_json() == {"received": 1, "repeats": 0, "refused": 0}


async def test_either_secret_of_a_rotation_verifies(receiver: Receiver) -> None:
    assert await receiver.post(BODY, signed(secret=NEXT_SECRET)) == 204
    # During a rotation the sender signs with both: "v1,<old> v1,<new>".
    both = signed(secret=OTHER_SECRET)
    both["webhook-signature"] += " " + signed()["webhook-signature"]
    assert await receiver.post(BODY, both) == 204
    assert receiver.counts.as_json() == {"received": 2, "repeats": 1, "refused": 0}
    assert receiver.lines()[1].endswith("(repeat)")


@pytest.mark.parametrize(
    ("why", "body", "headers"),
    [
        ("a wrong secret", BODY, signed(secret=OTHER_SECRET)),
        ("a tampered body", BODY.replace(b"acct-0042", b"acct-0043"), signed()),
        ("another id", BODY, {**signed(), "webhook-id": "someone-else"}),
        ("no signature", BODY, {k: v for k, v in signed().items() if k != "webhook-signature"}),
    ],
)
async def test_a_bad_signature_is_refused(
    receiver: Receiver, why: str, body: bytes, headers: dict[str, str]
) -> None:
    assert await receiver.post(body, headers) == 401, why
    assert receiver.lines() == []
    assert receiver.counts.as_json() == {"received": 0, "repeats": 0, "refused": 1}


@pytest.mark.parametrize("off", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_a_timestamp_outside_the_tolerance_is_refused(
    receiver: Receiver, off: timedelta
) -> None:
    # Signed correctly, but replayed (or sent) six minutes off: the library allows five.
    headers = signed(at=datetime.now(UTC) + off)
    response = await receiver.client.post("/", data=BODY, headers=headers)
    assert response.status == 401
    assert "timestamp" in await response.text()
    assert receiver.counts.refused == 1


async def test_counts_are_served_as_json(receiver: Receiver) -> None:
    await receiver.post(BODY, signed())
    await receiver.post(BODY, signed(secret=OTHER_SECRET))
    response = await receiver.client.get("/counts")
    assert await response.json() == {"received": 1, "repeats": 0, "refused": 1}


async def test_a_verified_body_that_is_not_an_event_still_prints_a_line(
    receiver: Receiver,
) -> None:
    assert await receiver.post(b"[1, 2]", signed(b"[1, 2]", webhook_id="w-1")) == 204
    assert receiver.lines() == ["w-1  -  -  -"]


def test_the_command_line_takes_repeated_secrets_and_refuses_a_bad_one_unshown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["receive", "--secret", SECRET, "--secret", NEXT_SECRET])
    assert (args.host, args.port, args.secret) == ("127.0.0.1", 8099, [SECRET, NEXT_SECRET])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["receive", "--secret", "whsec_typo!MfKQ9r8GKYqrTwj"])
    assert "MfKQ9r8" not in capsys.readouterr().err


def test_without_a_secret_the_receiver_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MOMENTS_RECEIVER_SECRET", raising=False)
    args = argparse.Namespace(secret=None, host="127.0.0.1", port=8099)
    with pytest.raises(ConfigError, match="MOMENTS_RECEIVER_SECRET"):
        run_receive(args)


def test_a_verifier_never_shows_its_secrets() -> None:
    verifier = Verifier([SECRET, NEXT_SECRET])
    assert "MfKQ9r8" not in repr(verifier)
    assert len(verifier) == 2
