"""Workers against a secured broker: SASL_PLAINTEXT (PLAIN, SCRAM-SHA-512) and SSL.

The module starts its own broker with scripts/kafka-local (a PLAINTEXT listener for
the test's own producers and readers, a SASL_PLAINTEXT and an SSL listener with
mutual TLS), with certificates from a throwaway CA made by ``openssl`` here. A
worker with the right settings becomes ready and turns usage into an event; one
with a wrong setting exits with status 2 within seconds and one line naming the
setting. No password appears in a worker's log, its /metrics page or
``moments check-config``.

Ports: ``MOMENTS_TEST_SECURED_PORT_BASE`` (default 19710) and the nine after it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import MOMENTS, Stack, Worker
from tests.integration.tls import CertificateAuthority, Issued, broker_ssl_dir, make_ca

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
BASE = int(os.environ.get("MOMENTS_TEST_SECURED_PORT_BASE", "19710"))
PLAINTEXT_PORT, CONTROLLER_PORT, SASL_PORT, SSL_PORT = BASE, BASE + 1, BASE + 2, BASE + 3
WEB_PORTS = tuple(range(BASE + 4, BASE + 10))

# Distinctive, so that a search of logs for them cannot match anything else.
PLAIN_USER, PLAIN_PASSWORD = "plain-user", "pl41n-pw-5e7c1d"
SCRAM_USER, SCRAM_PASSWORD = "scram-user", "scr4m-pw-a93f0b"
WRONG_PASSWORD = "wr0ng-pw-11d2c8"  # noqa: S105 - a test credential, wrong on purpose
SECRETS = (PLAIN_PASSWORD, SCRAM_PASSWORD, WRONG_PASSWORD)

#: A worker with a wrong setting must be gone well within this (issue #10: < 30 s).
FAIL_FAST_S = 30.0


@dataclass(frozen=True)
class SecuredBroker:
    """The module's broker: its listeners and the files a client needs."""

    ca: CertificateAuthority
    client: Issued
    #: A CA that signed nothing the broker shows: trusting it must fail.
    rogue_ca: CertificateAuthority

    plaintext = f"127.0.0.1:{PLAINTEXT_PORT}"
    sasl = f"127.0.0.1:{SASL_PORT}"
    ssl = f"127.0.0.1:{SSL_PORT}"


@pytest.fixture(scope="session", autouse=True)
def kafka_is_up() -> None:
    """Overrides the shared-broker check: this module needs only the broker it starts."""


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """A fresh broker with SASL_PLAINTEXT and SSL (client certificates required)."""
    tmp = tmp_path_factory.mktemp("secured-kafka")
    ca = make_ca(tmp / "ca")
    ssl_dir = broker_ssl_dir(tmp / "broker-ssl", ca, client_ca=ca.cert)
    broker = SecuredBroker(
        ca=ca, client=ca.issue(tmp / "client", "client"), rogue_ca=make_ca(tmp / "rogue", "rogue")
    )
    env = {
        **os.environ,
        "KAFKA_PORT": str(PLAINTEXT_PORT),
        "KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
        "KAFKA_SASL_PORT": str(SASL_PORT),
        "KAFKA_SASL_USERS": f"{PLAIN_USER}:{PLAIN_PASSWORD},{SCRAM_USER}:{SCRAM_PASSWORD}",
        "KAFKA_SSL_PORT": str(SSL_PORT),
        "KAFKA_SSL_DIR": str(ssl_dir),
        "KAFKA_SSL_CLIENT_AUTH": "required",
        "KAFKA_LOCAL_DIR": str(tmp / "kafka"),
        "KAFKA_HEAP_OPTS": "-Xmx512m -Xms128m",
    }
    script = str(ROOT / "scripts" / "kafka-local")

    def run(command: str) -> None:
        result = subprocess.run(  # noqa: S603 - the project's own script
            [script, command], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"kafka-local {command} failed:\n{result.stderr[-4000:]}")

    run("start")
    try:
        yield broker
    finally:
        run("stop")


@pytest.fixture
async def secured_stack(secured_broker: SecuredBroker, tmp_path: Path) -> Iterator[Stack]:  # type: ignore[misc]
    """Topics on the secured broker, written and read over its PLAINTEXT listener."""
    stack = Stack(tmp_path, bootstrap=secured_broker.plaintext)
    try:
        yield stack
    finally:
        await stack.close()


def _worker(stack: Stack, name: str, port: int, settings: dict[str, str]) -> Worker:
    env = stack.env(stack.tmp / name, port, **settings)
    worker = Worker(env, port, stack.tmp / f"{name}.log")
    stack.workers.append(worker)
    return worker


def _settings(broker: SecuredBroker, case: str) -> dict[str, str]:
    """The security settings of one case, by name."""
    sasl = {"MOMENTS_KAFKA_BOOTSTRAP": broker.sasl, "MOMENTS_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    tls = {
        "MOMENTS_KAFKA_BOOTSTRAP": broker.ssl,
        "MOMENTS_SECURITY_PROTOCOL": "SSL",
        "MOMENTS_SSL_CAFILE": str(broker.ca.cert),
        "MOMENTS_SSL_CERTFILE": str(broker.client.cert),
        "MOMENTS_SSL_KEYFILE": str(broker.client.key),
    }
    plain = {**sasl, "MOMENTS_SASL_MECHANISM": "PLAIN", "MOMENTS_SASL_USERNAME": PLAIN_USER}
    scram = {**sasl, "MOMENTS_SASL_MECHANISM": "SCRAM-SHA-512", "MOMENTS_SASL_USERNAME": SCRAM_USER}
    cases = {
        # Debug level: aiokafka then logs every request, the SASL ones included.
        "sasl-plain": {
            **plain,
            "MOMENTS_SASL_PASSWORD": PLAIN_PASSWORD,
            "MOMENTS_LOG_LEVEL": "debug",
        },
        "sasl-scram-sha-512": {**scram, "MOMENTS_SASL_PASSWORD": SCRAM_PASSWORD},
        "ssl-mutual": tls,
        "plain-wrong-password": {**plain, "MOMENTS_SASL_PASSWORD": WRONG_PASSWORD},
        "scram-wrong-password": {**scram, "MOMENTS_SASL_PASSWORD": WRONG_PASSWORD},
        "scram-sha-256-not-enabled": {
            **scram,
            "MOMENTS_SASL_MECHANISM": "SCRAM-SHA-256",
            "MOMENTS_SASL_PASSWORD": SCRAM_PASSWORD,
        },
        "ssl-wrong-ca": {**tls, "MOMENTS_SSL_CAFILE": str(broker.rogue_ca.cert)},
        "ssl-no-client-certificate": {
            k: v for k, v in tls.items() if k not in ("MOMENTS_SSL_CERTFILE", "MOMENTS_SSL_KEYFILE")
        },
        "sasl-client-on-ssl-port": {
            **plain,
            "MOMENTS_SASL_PASSWORD": PLAIN_PASSWORD,
            "MOMENTS_KAFKA_BOOTSTRAP": broker.ssl,
        },
    }
    return cases[case]


def _assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password appears in {where}"


@pytest.mark.parametrize(
    ("case", "port"),
    [
        ("sasl-plain", WEB_PORTS[0]),
        ("sasl-scram-sha-512", WEB_PORTS[1]),
        ("ssl-mutual", WEB_PORTS[2]),
    ],
)
async def test_worker_with_right_credentials_turns_usage_into_an_event(
    secured_broker: SecuredBroker, secured_stack: Stack, case: str, port: int
) -> None:
    """Ready on the secured listener, an event from one record, no password anywhere."""
    stack = secured_stack
    settings = _settings(secured_broker, case)
    await stack.create_inputs()
    await stack.plan("acct-1", "starter")
    worker = _worker(stack, case, port, settings).start()
    await worker.ready(timeout=90)
    await stack.usage("acct-1", "r1", quantity=1_000_000)
    events = await stack.read(f"{stack.prefix}.threshold-hit", 1, timeout=45)
    assert orjson.loads(events[0].value)["account_id"] == "acct-1"
    assert await worker.metric("moments_records_total", outcome="accepted") >= 1

    status, metrics = await worker.get("/metrics")
    assert status == 200
    _assert_no_secret("/metrics", str(metrics))
    check = subprocess.run(  # noqa: S603 - the project's own command
        [str(MOMENTS), "check-config"], env=worker.env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    _assert_no_secret("check-config output", check.stdout + check.stderr)
    if "MOMENTS_SASL_PASSWORD" in settings:
        assert "sasl_password = ***" in check.stdout
    assert worker.stop() == 0, worker.log()
    _assert_no_secret("the worker's log", worker.log_path.read_text(errors="replace"))


@pytest.mark.parametrize(
    ("case", "variable", "says"),
    [
        (
            "plain-wrong-password",
            "MOMENTS_SASL_PASSWORD",
            f"authentication failed for user '{PLAIN_USER}' (PLAIN)",
        ),
        (
            "scram-wrong-password",
            "MOMENTS_SASL_PASSWORD",
            f"authentication failed for user '{SCRAM_USER}' (SCRAM-SHA-512)",
        ),
        ("scram-sha-256-not-enabled", "MOMENTS_SASL_MECHANISM", "does not enable SCRAM-SHA-256"),
        ("ssl-wrong-ca", "MOMENTS_SSL_CAFILE", "failed verification"),
        ("ssl-no-client-certificate", "MOMENTS_SSL_CERTFILE", "wants a client certificate"),
        ("sasl-client-on-ssl-port", "MOMENTS_SECURITY_PROTOCOL", "another security protocol"),
    ],
)
async def test_worker_with_a_wrong_setting_fails_fast_naming_it(
    secured_broker: SecuredBroker, secured_stack: Stack, case: str, variable: str, says: str
) -> None:
    """Exit status 2 within seconds, one error line naming the setting, no traceback."""
    worker = _worker(secured_stack, case, WEB_PORTS[3], _settings(secured_broker, case))
    started = time.monotonic()
    worker.start()
    assert worker.proc is not None
    try:
        code = await asyncio.to_thread(worker.proc.wait, FAIL_FAST_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: worker still running after {FAIL_FAST_S}s:\n{worker.log()}")
    took = time.monotonic() - started
    log = worker.log_path.read_text(errors="replace")
    assert code == 2, log
    errors = [line for line in log.splitlines() if "error" in line.lower()]
    assert errors == [errors[0]] and errors[0].startswith(
        f"moments: configuration error: {variable}: "
    ), log
    assert says in errors[0], errors[0]
    assert "Traceback" not in log, log
    _assert_no_secret("the worker's log", log)
    print(f"{case}: exit {code} after {took:.1f}s: {errors[0]}")  # noqa: T201 - for -s runs
