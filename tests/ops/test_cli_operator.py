"""``moments`` with the operator settings: JSON errors, the token masked, ``status``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

MOMENTS = Path(sys.executable).with_name("moments")
TOKEN = "token-for-the-cli-test-0123"  # noqa: S105 - a test value


def _run(*args: str, **short: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update({f"MOMENTS_{k}": v for k, v in short.items()})
    return subprocess.run(  # noqa: S603
        [str(MOMENTS), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_configuration_error_is_one_json_line_in_json_format() -> None:
    done = _run("check-config", LOG_FORMAT="json", PARTITIONS="zero")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    obj = json.loads(line)
    assert obj["level"] == "error"
    assert "MOMENTS_PARTITIONS" in obj["message"]


def test_check_config_masks_the_web_token() -> None:
    done = _run("check-config", WEB_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "web_token = ***" in done.stdout


def test_a_bad_token_is_refused_without_showing_it() -> None:
    done = _run("check-config", WEB_TOKEN="has a space in it!!")  # noqa: S106 - a test value
    assert done.returncode == 2
    assert "MOMENTS_WEB_TOKEN" in done.stderr
    assert "has a space" not in done.stderr


def test_status_of_a_worker_that_is_not_there_fails() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _run("status", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert "down" in done.stdout
