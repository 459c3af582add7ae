"""The worker's pre-flight check: each connection failure becomes one line naming a setting.

Exceptions are built as aiokafka 0.14 raises them (aiokafka/conn.py); the real
broker's answers are exercised in tests/integration/test_secured_kafka.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from app.preflight import check_broker_access, classify
from app.security import client_kwargs
from config.settings import Settings, load_settings
from domain.errors import BrokerAccessError, SettingsError

ADDRESS = "127.0.0.1:9094"
PASSWORD = "not-in-any-message-3c1f"  # noqa: S105 - a test credential


def _settings(**short: str) -> Settings:
    return load_settings({f"MOMENTS_{k}": v for k, v in short.items()})


SASL = {
    "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "SASL_MECHANISM": "SCRAM-SHA-512",
    "SASL_USERNAME": "svc-moments",
    "SASL_PASSWORD": PASSWORD,
}


def _closed(cause: BaseException) -> KafkaConnectionError:
    exc = KafkaConnectionError(f"Connection at {ADDRESS} closed")
    exc.__cause__ = cause
    return exc


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("settings", "exc", "variable", "says"),
    [
        (
            SASL,
            SaslAuthenticationFailed("Authentication failed during authentication"),
            "MOMENTS_SASL_PASSWORD",
            "authentication failed for user 'svc-moments' (SCRAM-SHA-512) at 127.0.0.1:9094",
        ),
        (
            SASL,
            UnsupportedSaslMechanismError("no"),
            "MOMENTS_SASL_MECHANISM",
            "does not enable SCRAM-SHA-512",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL"},
            _verify_error(19, "self-signed certificate in certificate chain"),
            "MOMENTS_SSL_CAFILE",
            "failed verification (self-signed certificate in certificate chain)",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL"},
            _verify_error(62, "Hostname mismatch, certificate is not valid for 'kafka-0'"),
            "MOMENTS_KAFKA_BOOTSTRAP",
            "does not name that host",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL"},
            _closed(ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad cert")),
            "MOMENTS_SSL_CERTFILE",
            "wants a client certificate",
        ),
        (
            SASL,
            _closed(asyncio.IncompleteReadError(b"abc", 352518912)),
            "MOMENTS_SECURITY_PROTOCOL",
            "another security protocol",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL"},
            ConnectionResetError(),
            "MOMENTS_SECURITY_PROTOCOL",
            "client speaking SSL",
        ),
        (
            {},
            ConnectionRefusedError(111, "Connect call failed"),
            "MOMENTS_KAFKA_BOOTSTRAP",
            "cannot connect to 127.0.0.1:9094 (connect call failed)",
        ),
        ({}, TimeoutError(), "MOMENTS_KAFKA_BOOTSTRAP", "no answer from 127.0.0.1:9094"),
        ({}, RequestTimedOutError(), "MOMENTS_KAFKA_BOOTSTRAP", "refused the connection"),
    ],
    ids=[
        "sasl-auth",
        "mechanism",
        "untrusted-ca",
        "hostname",
        "client-cert",
        "sasl-on-ssl",
        "ssl-on-plain",
        "refused",
        "timeout",
        "other-kafka-error",
    ],
)
def test_each_failure_names_the_setting_on_one_line(
    settings: dict[str, str], exc: BaseException, variable: str, says: str
) -> None:
    error = classify(_settings(**settings), ADDRESS, exc)
    message = str(error)
    assert error.variable == variable
    assert message.startswith(f"{variable}: ")
    assert says in message
    assert "\n" not in message
    assert PASSWORD not in message


def test_client_certificate_refused_when_one_is_given(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("unused")
    settings = _settings(SECURITY_PROTOCOL="SSL", SSL_CERTFILE=str(cert))
    error = classify(settings, ADDRESS, _closed(ssl.SSLError(1, "TLSV1_ALERT_UNKNOWN_CA")))
    assert error.variable == "MOMENTS_SSL_CERTFILE"
    assert "refused the client certificate" in str(error)


def test_a_bug_is_not_passed_off_as_a_setting() -> None:
    with pytest.raises(ZeroDivisionError):
        classify(_settings(), ADDRESS, ZeroDivisionError())


async def test_a_refusal_is_reported_before_an_address_nobody_listens_on() -> None:
    """Of several failing addresses, the broker that answered says the most."""
    # A port that refuses (bound, not listening) and one that closes the connection.
    with socket.socket() as idle, socket.socket() as closer:
        idle.bind(("127.0.0.1", 0))
        closer.bind(("127.0.0.1", 0))
        closer.listen()
        refused = f"127.0.0.1:{idle.getsockname()[1]}"
        closing = f"127.0.0.1:{closer.getsockname()[1]}"

        async def accept_and_close() -> None:
            loop = asyncio.get_running_loop()
            closer.setblocking(False)
            conn, _ = await loop.sock_accept(closer)
            conn.close()

        task = asyncio.create_task(accept_and_close())
        settings = _settings(KAFKA_BOOTSTRAP=f"{refused},{closing}")
        with pytest.raises(BrokerAccessError) as info:
            await check_broker_access(settings, client_kwargs(settings))
        await task
    assert info.value.variable == "MOMENTS_SECURITY_PROTOCOL"
    assert closing in str(info.value)


@pytest.mark.parametrize(
    ("files", "variable"),
    [
        ({"SSL_CAFILE": "not a certificate"}, "MOMENTS_SSL_CAFILE"),
        ({"SSL_CERTFILE": "junk"}, "MOMENTS_SSL_CERTFILE"),
    ],
)
def test_unreadable_tls_files_name_their_setting(
    tmp_path: Path, files: dict[str, str], variable: str
) -> None:
    env = {"SECURITY_PROTOCOL": "SSL"}
    for key, text in files.items():
        path = tmp_path / f"{key.lower()}.pem"
        path.write_text(text)
        env[key] = str(path)
    with pytest.raises(SettingsError) as info:
        client_kwargs(_settings(**env))
    assert info.value.variable == variable


def test_sasl_credentials_never_reach_the_log_and_the_clear_text_warning_comes_once() -> None:
    from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

    from app.redaction import KafkaCredentialsFilter

    request = SaslAuthenticateRequest_v1(f"u\x00u\x00{PASSWORD}".encode())
    assert PASSWORD in str(request)  # what aiokafka 0.14 would print at debug level
    log_filter = KafkaCredentialsFilter()

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.conn", logging.DEBUG, __file__, 1, msg, args, None)

    sent = record("Request to %s:%d %d: %s", "127.0.0.1", 9094, 3, request)
    assert log_filter.filter(sent)
    assert PASSWORD not in sent.getMessage()
    assert "127.0.0.1:9094 3" in sent.getMessage()
    other = record("Request to %s:%d %d: %s", "127.0.0.1", 9094, 4, "MetadataRequest_v0()")
    assert log_filter.filter(other) and other.getMessage().endswith("MetadataRequest_v0()")
    warning = "Sending username and password in the clear"
    assert log_filter.filter(record(warning))
    assert not log_filter.filter(record(warning))
