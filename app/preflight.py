"""Pre-flight check of the worker's access to Kafka, before any client that retries.

Why: aiokafka's clients reduce every failure to connect to "Unable to bootstrap"
(admin) or keep retrying in the background (consumers, producers), so a wrong
password, an untrusted broker certificate or a port of another protocol shows as
a hang or a traceback that names no setting. This module opens one connection per
bootstrap address with the configured security settings, asks for metadata (which
Kafka answers only after authentication), and turns the first failure into a
:class:`~domain.errors.BrokerAccessError` whose one line names the setting to change.

Written against aiokafka 0.14.0: :func:`aiokafka.conn.create_conn` and
``MetadataRequest`` are not part of aiokafka's documented API, and the exceptions
:func:`classify` tells apart are those its connection raises (read in
``aiokafka/conn.py``): ``SaslAuthenticationFailed`` (SASL authenticate error 58),
``UnsupportedSaslMechanismError`` (handshake error 33), ``ssl.SSLCertVerificationError``
from the TLS handshake, ``KafkaConnectionError`` whose ``__cause__`` holds the TLS
alert or the short read when the broker drops the connection, and plain ``OSError``
for addresses nobody listens on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from config.settings import Settings
from domain.errors import BrokerAccessError

logger = logging.getLogger(__name__)

#: Seconds one address may take to connect, authenticate and answer. Generous for a
#: loaded broker, yet a worker with a wrong setting still stops well within 30 s.
ADDRESS_TIMEOUT_S = 10.0

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate names another host.
_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BrokerAccessError
    #: Nobody answered (refused, timed out): says less than a broker's refusal.
    unreachable: bool


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _ssl_reason(exc: BaseException) -> ssl.SSLError | None:
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLError):
            return candidate
    return None


def _closed_early(exc: BaseException) -> bool:
    """The broker dropped the connection before a Kafka answer: another protocol."""
    return isinstance(exc, KafkaConnectionError | ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, OSError) and isinstance(exc.__cause__, asyncio.IncompleteReadError)
    )


def classify(settings: Settings, address: str, exc: BaseException) -> BrokerAccessError:
    """The one-line error, naming a setting, for ``exc`` raised connecting to ``address``.

    Pure: no I/O, so every branch is unit-tested with constructed exceptions. The
    password is never part of the message (the broker's own text carries none).
    """
    return _classify(settings, address, exc).error


def _classify(settings: Settings, address: str, exc: BaseException) -> _Failure:
    protocol = settings.security_protocol

    def fail(variable: str, problem: str, *, unreachable: bool = False) -> _Failure:
        return _Failure(BrokerAccessError(variable, problem), unreachable)

    if isinstance(exc, SaslAuthenticationFailed):
        # The broker's own text ("Invalid username or password"), without aiokafka's
        # "[Error 58] SaslAuthenticationFailed:" prefix; it never holds the password.
        said = str(exc.args[0]).strip() if exc.args and isinstance(exc.args[0], str) else ""
        return fail(
            "MOMENTS_SASL_PASSWORD",
            f"authentication failed for user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism}) at {address}: check MOMENTS_SASL_USERNAME and "
            f"MOMENTS_SASL_PASSWORD" + (f" (broker: {said})" if said else ""),
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return fail(
            "MOMENTS_SASL_MECHANISM",
            f"the listener at {address} does not enable {settings.sasl_mechanism}: "
            f"set MOMENTS_SASL_MECHANISM to one it enables (PLAIN, SCRAM-SHA-256 or "
            f"SCRAM-SHA-512)",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        if exc.verify_code == _HOSTNAME_MISMATCH:
            return fail(
                "MOMENTS_KAFKA_BOOTSTRAP",
                f"the certificate of the broker at {address} does not name that host ({why}): "
                f"use a host name or IP address listed in the certificate",
            )
        ca = settings.ssl_cafile or "unset, so the system's CAs were used"
        return fail(
            "MOMENTS_SSL_CAFILE",
            f"the certificate of the broker at {address} failed verification ({why}) "
            f"against MOMENTS_SSL_CAFILE ({ca}): set it to the CA that signed the "
            f"broker's certificate",
        )
    tls = _ssl_reason(exc)
    # OpenSSL's reason code, e.g. SSLV3_ALERT_BAD_CERTIFICATE (absent when built in Python).
    reason = str(getattr(tls, "reason", None) or tls)
    if tls is not None and "ALERT" in reason.upper():
        # The broker ended the handshake with an alert: it refused our certificate
        # (or the lack of one); a server's own certificate fails verification above.
        why = reason.lower().replace("_", " ")
        if settings.ssl_certfile is None:
            return fail(
                "MOMENTS_SSL_CERTFILE",
                f"the broker at {address} refused the TLS handshake ({why}): it wants a "
                f"client certificate; set MOMENTS_SSL_CERTFILE and MOMENTS_SSL_KEYFILE",
            )
        return fail(
            "MOMENTS_SSL_CERTFILE",
            f"the broker at {address} refused the client certificate "
            f"{settings.ssl_certfile} ({why}): it must be signed by a CA the broker trusts",
        )
    if tls is not None or _closed_early(exc):
        return fail(
            "MOMENTS_SECURITY_PROTOCOL",
            f"the broker at {address} closed the connection before answering a client "
            f"speaking {protocol}: that port has a listener of another security protocol; "
            f"check MOMENTS_SECURITY_PROTOCOL and the port in MOMENTS_KAFKA_BOOTSTRAP",
        )
    if isinstance(exc, TimeoutError):
        return fail(
            "MOMENTS_KAFKA_BOOTSTRAP",
            f"no answer from {address} within {ADDRESS_TIMEOUT_S:g} s with "
            f"MOMENTS_SECURITY_PROTOCOL={protocol}: check the address, the broker and "
            f"that the port's listener speaks {protocol}",
            unreachable=True,
        )
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc) or type(exc).__name__
        return fail(
            "MOMENTS_KAFKA_BOOTSTRAP",
            f"cannot connect to {address} ({why.lower()}): check the address and that "
            f"the broker is up",
            unreachable=True,
        )
    if isinstance(exc, KafkaError):
        return fail(
            "MOMENTS_KAFKA_BOOTSTRAP",
            f"the broker at {address} refused the connection ({type(exc).__name__}: {exc}): "
            f"check MOMENTS_KAFKA_BOOTSTRAP and MOMENTS_SECURITY_PROTOCOL",
        )
    raise exc  # a bug here, not a setting: let it show as one


async def _probe(host: str, port: int, client_kwargs: Mapping[str, Any]) -> None:
    conn = await create_conn(
        host, port, request_timeout_ms=int(ADDRESS_TIMEOUT_S * 1000), **client_kwargs
    )
    try:
        # Kafka answers ApiVersions before authentication; metadata only after it.
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()


async def check_broker_access(settings: Settings, client_kwargs: Mapping[str, Any]) -> str:
    """Connect to each bootstrap address until one answers; return that address.

    Raises:
        BrokerAccessError: no address answered; the most telling failure (a broker's
            refusal before an address where nobody listens), naming its setting.
    """
    failures: list[_Failure] = []
    for address in settings.kafka_bootstrap:
        host, port = _split(address)
        try:
            # The connection's own timeout covers each step; this bounds the sum.
            await asyncio.wait_for(_probe(host, port, client_kwargs), ADDRESS_TIMEOUT_S * 1.5)
        except (OSError, KafkaError, TimeoutError) as exc:
            failure = _classify(settings, address, exc)
            logger.debug("pre-flight: %s", failure.error)
            failures.append(failure)
            continue
        logger.info(
            "Kafka at %s accepts this worker (%s%s)",
            address,
            settings.security_protocol,
            f", {settings.sasl_mechanism} as {settings.sasl_username!r}"
            if settings.security_protocol.startswith("SASL")
            else "",
        )
        return address
    refused = [f for f in failures if not f.unreachable]
    raise (refused or failures)[0].error


def check_broker_access_sync(settings: Settings, client_kwargs: Mapping[str, Any]) -> str:
    """:func:`check_broker_access` for synchronous callers (the CLI, before Faust's loop)."""
    return asyncio.run(check_broker_access(settings, client_kwargs))
