"""``moments deliver`` as a process: a wrong endpoints file or schedule stops it with one line
naming the endpoint and field (or the variable), exit status 2, before any connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MOMENTS = Path(sys.executable).with_name("moments")
SECRET = "whsec_" + "QUFB" * 11  # 33 bytes of "A"


def _deliver(
    tmp_path: Path, endpoints: str, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "endpoints.toml"
    path.write_text(endpoints)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update(
        MOMENTS_ENDPOINTS_FILE=str(path),
        MOMENTS_KAFKA_BOOTSTRAP="127.0.0.1:1",  # nothing listens: a config error comes first
        IT_SECRET=SECRET,
        **extra,
    )
    return subprocess.run(
        [str(MOMENTS), "deliver", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


GOOD = """[[endpoints]]
name = "crm"
url = "https://x.example/h"
kinds = ["*"]
secret_env = "IT_SECRET"
"""


@pytest.mark.parametrize(
    ("endpoints", "extra", "args", "message"),
    [
        (GOOD.replace('"*"', '"thresholds"'), {}, (), "endpoint 'crm': kinds: unknown kind"),
        (
            GOOD.replace("IT_SECRET", "NOT_SET"),
            {},
            (),
            "secret_env: the environment variable NOT_SET",
        ),
        ("[[endpoints]]\nname = 'crm'\n[broken", {}, (), "not valid TOML"),
        ("", {}, (), "no [[endpoints]]"),
        (GOOD, {"MOMENTS_DELIVER_SCHEDULE": "5s,5s"}, (), "MOMENTS_DELIVER_SCHEDULE='5s,5s'"),
        (GOOD, {}, ("--replay", "--endpoint", "nope"), "--endpoint nope: no such endpoint"),
    ],
)
def test_a_wrong_configuration_stops_deliver_naming_it(
    tmp_path: Path, endpoints: str, extra: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    done = _deliver(tmp_path, endpoints, *args, **extra)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert SECRET.removeprefix("whsec_") not in done.stdout + done.stderr
