"""Kafka security settings (SASL/SSL) in the shapes Faust and aiokafka want."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from pydantic import SecretStr

from config.settings import Settings
from domain.errors import SettingsError


def _no_key_password() -> bytes:
    return b""


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL; a file OpenSSL cannot use names its setting."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    except ssl.SSLError as exc:
        raise SettingsError(
            "MOMENTS_SSL_CAFILE", str(settings.ssl_cafile), f"PEM CA certificates ({exc.reason})"
        ) from None
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                # An encrypted key fails here instead of OpenSSL prompting on a terminal.
                password=_no_key_password,
            )
        except ssl.SSLError as exc:
            # KEY_VALUES_MISMATCH: the key is not the certificate's. Otherwise OpenSSL
            # cannot tell which of the two files it could not read.
            if "MISMATCH" in str(exc.reason):
                raise SettingsError(
                    "MOMENTS_SSL_KEYFILE",
                    str(settings.ssl_keyfile),
                    f"the private key of MOMENTS_SSL_CERTFILE ({exc.reason})",
                ) from None
            raise SettingsError(
                "MOMENTS_SSL_CERTFILE",
                str(settings.ssl_certfile),
                "a PEM certificate, with its unencrypted PEM key in it or in "
                f"MOMENTS_SSL_KEYFILE ({exc.reason})",
            ) from None
    return context


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Kafka credentials for the configured security protocol, or None for PLAINTEXT."""
    context = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=_revealed(settings.sasl_password),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for plain aiokafka clients (admin, producer, consumer)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = _ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = _revealed(settings.sasl_password)
    return kwargs


def _revealed(secret: SecretStr | None) -> str | None:
    """A secret's value, for the client that sends it (and nothing that logs it)."""
    return None if secret is None else secret.get_secret_value()
