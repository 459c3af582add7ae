"""The ``moments`` command (contract 5): a bad setting stops it with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

MOMENTS = Path(sys.executable).with_name("moments")
EXIT_CONFIG = 2

STARTER = """
[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = { api_calls = 10000 }
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def moments(tmp_path: Path) -> Run:
    """Factory: run ``moments ARGS`` with only the given ``MOMENTS_*`` variables set."""

    def run(*args: str, **short: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
        env.update({f"MOMENTS_{k}": v for k, v in short.items()})
        return subprocess.run(
            [str(MOMENTS), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def plans_file(tmp_path: Path) -> Callable[[str], str]:
    def write(text: str) -> str:
        path = tmp_path / "plans.toml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_check_config_with_defaults(moments: Run) -> None:
    done = moments("check-config")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ok"
    assert "kafka_bootstrap = localhost:9092" in done.stdout
    assert "web_port = 6066" in done.stdout
    assert "compression codecs decoded: none, gzip, snappy, lz4, zstd" in done.stdout


def test_check_config_warns_about_typos(moments: Run) -> None:
    done = moments("check-config", PARTITION="8")
    assert done.returncode == 0, done.stderr
    assert "MOMENTS_PARTITION is not a setting" in done.stdout


def test_check_config_masks_the_password(moments: Run) -> None:
    secret = {"SASL_PASSWORD": "pa55-xyz"}
    done = moments("check-config", SECURITY_PROTOCOL="SASL_SSL", SASL_USERNAME="svc", **secret)
    assert done.returncode == 0, done.stderr
    assert "pa55-xyz" not in done.stdout + done.stderr
    assert "sasl_password = ***" in done.stdout


@pytest.mark.parametrize(
    ("short", "value"),
    [("PARTITIONS", "zero"), ("WEB_PORT", "70000"), ("DROP_FRACTION", "1")],
)
def test_check_config_names_a_bad_variable(moments: Run, short: str, value: str) -> None:
    done = moments("check-config", **{short: value})
    assert done.returncode == EXIT_CONFIG
    line = one_line(done.stderr)
    assert f"MOMENTS_{short}" in line
    assert "Traceback" not in done.stderr
    assert "ok" not in done.stdout


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (STARTER.replace("10000", "-5"), ("starter", "limits.api_calls")),
        (STARTER.replace('name = "Starter"\n', ""), ("starter", "name")),
        (STARTER + STARTER.replace('"starter"', '"pro"'), ("pro", "rank")),
        (STARTER + "near_levels = [1.5]\n", ("starter", "near_levels")),
        ("[[plans]\nid = ", ("plans.toml", "TOML")),
    ],
)
def test_check_config_names_the_plan_and_field(
    moments: Run, plans_file: Callable[[str], str], text: str, names: tuple[str, ...]
) -> None:
    done = moments("check-config", PLANS_FILE=plans_file(text))
    assert done.returncode == EXIT_CONFIG
    line = one_line(done.stderr)
    assert all(name in line for name in names), line


def test_a_valid_custom_catalog_is_accepted(moments: Run, plans_file: Callable[[str], str]) -> None:
    done = moments("check-config", PLANS_FILE=plans_file(STARTER))
    assert done.returncode == 0, done.stderr
    assert "starter (Starter)" in done.stdout


def test_check_config_lists_aggregations_and_meters(
    moments: Run, plans_file: Callable[[str], str]
) -> None:
    metered = (
        '[metrics]\nseats = { unit = "seats", aggregation = "latest" }\n'
        + STARTER
        + '[[meters]]\nevent_type = "llm-completion"\nmetric = "tokens"\nvalue = "usage.tokens"\n'
        + 'where = { model = "gpt-4o" }\n'
    )
    done = moments("check-config", PLANS_FILE=plans_file(metered))
    assert done.returncode == 0, done.stderr
    assert "  metrics: seats (latest)\n" in done.stdout
    assert (
        "  meter: CloudEvents 'llm-completion' -> tokens (data.usage.tokens, "
        "data.model = 'gpt-4o')\n" in done.stdout
    )


@pytest.mark.parametrize(
    ("short", "value"),
    [("PROCESSING_GUARANTEE", "maybe"), ("PARTITIONS", "zero")],
)
def test_worker_refuses_a_bad_setting_before_connecting(
    moments: Run, short: str, value: str
) -> None:
    done = moments("worker", KAFKA_BOOTSTRAP="127.0.0.1:1", **{short: value})
    assert done.returncode == EXIT_CONFIG, done.stderr
    line = one_line(done.stderr)
    assert f"MOMENTS_{short}" in line
    assert "127.0.0.1" not in done.stderr


def test_check_config_reads_the_message_templates(moments: Run, tmp_path: Path) -> None:
    broken = tmp_path / "messages.toml"
    broken.write_text("[threshold-near\n")
    done = moments("check-config", MESSAGES_FILE=str(broken))
    assert done.returncode == EXIT_CONFIG
    assert str(broken) in one_line(done.stderr)
    assert "ok" not in done.stdout


ENDPOINT = """
[[endpoints]]
name = "crm"
url = "https://hooks.example.com/T0K3N?key=s3cr3t"
kinds = ["threshold-hit", "custom.suport-heavy"]
secret_env = "CRM_SECRET"
"""


def test_check_config_checks_the_webhook_endpoints(moments: Run, tmp_path: Path) -> None:
    path = tmp_path / "endpoints.toml"
    path.write_text(ENDPOINT, encoding="utf-8")
    done = moments("check-config", ENDPOINTS_FILE=str(path))
    assert done.returncode == 0, done.stderr
    assert "crm -> https://hooks.example.com/...: kinds threshold-hit, custom.suport-heavy" in (
        done.stdout
    )
    assert "T0K3N" not in done.stdout and "s3cr3t" not in done.stdout
    assert "kinds 'custom.suport-heavy' is no kind of the catalog" in done.stdout
    assert "CRM_SECRET is not set here" in done.stdout


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        (ENDPOINT.replace("https://", "ftp://"), {}, ("endpoint 'crm'", "url")),
        (ENDPOINT, {"CRM_SECRET": "whsec_not-base64!"}, ("endpoint 'crm'", "CRM_SECRET")),
        (ENDPOINT + "timeout = 3\n", {}, ("endpoint 'crm'", "timeout")),
    ],
)
def test_check_config_names_the_endpoint_and_field(
    moments: Run, tmp_path: Path, text: str, env: dict[str, str], names: tuple[str, ...]
) -> None:
    path = tmp_path / "endpoints.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        done = moments("check-config", ENDPOINTS_FILE=str(path))
    assert done.returncode == EXIT_CONFIG, done.stdout
    line = one_line(done.stderr)
    assert all(name in line for name in names), line
    assert "not-base64" not in done.stderr
