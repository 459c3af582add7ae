"""``moments receive`` as ``make run`` will start it: a real process, real HTTP, SIGTERM.

It takes its secret from ``MOMENTS_RECEIVER_SECRET``, answers 204 to a webhook signed by the
standardwebhooks library and 401 to an unsigned one, prints the one verified webhook on
standard output, and on SIGTERM stops with status 0 after printing its counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from standardwebhooks import Webhook

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - made up for this test
MOMENTS = Path(sys.executable).with_name("moments")


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "moments receive exited at start"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/counts", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("moments receive did not listen within 30 s")


def test_the_receiver_process_verifies_prints_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env["MOMENTS_RECEIVER_SECRET"] = SECRET
    proc = subprocess.Popen(
        [str(MOMENTS), "receive", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}/webhooks"
        body = orjson.dumps(
            {"kind": "milestone", "account_id": "acct-7", "message": {"title": "50 orders!"}}
        )
        now = datetime.now(UTC)
        headers = {
            "webhook-id": "evt-1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign("evt-1", now, body),
            "content-type": "application/json",
        }
        assert _post(url, body, headers) == 204
        assert _post(url, body, {"content-type": "application/json"}) == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["evt-1  milestone  acct-7  50 orders!"]
    assert "1 received (0 repeats), 1 refused" in err.decode()
    assert SECRET.removeprefix("whsec_") not in err.decode()
