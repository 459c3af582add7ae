"""Keeps Kafka credentials out of the log, whatever the log level.

Written against aiokafka 0.14.0, whose connection logs every request it sends at
debug level (``aiokafka/conn.py``, ``AIOKafkaConnection.send``: "Request to %s:%d
%d: %s" with the request struct as the last argument). The SASL authenticate
request holds the credentials: for PLAIN, the password in clear
(``b'user\\x00user\\x00password'``). A filter on that logger replaces the struct
before any handler formats it.

The same connection warns "Sending username and password in the clear" on every
SASL_PLAINTEXT + PLAIN connection, dozens per start: the filter lets the first
through and drops the repeats, which bury other warnings and tell nothing new.
"""

from __future__ import annotations

import logging

#: The logger aiokafka's connections write to.
AIOKAFKA_CONN_LOGGER = "aiokafka.conn"

_REDACTED = "SaslAuthenticateRequest(<credentials redacted>)"
_IN_THE_CLEAR = "Sending username and password in the clear"


class KafkaCredentialsFilter(logging.Filter):
    """Redacts SASL authentication requests; passes the clear-text warning once."""

    def __init__(self) -> None:
        super().__init__()
        self._warned_in_the_clear = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record``'s arguments in place; False drops a repeated warning."""
        if record.msg == _IN_THE_CLEAR:
            if self._warned_in_the_clear:
                return False
            self._warned_in_the_clear = True
        if isinstance(record.args, tuple) and any(_is_sasl(a) for a in record.args):
            record.args = tuple(_REDACTED if _is_sasl(a) else a for a in record.args)
        return True


def _is_sasl(arg: object) -> bool:
    # By name: the request classes are generated per version (SaslAuthenticateRequest_v0,
    # _v1) in aiokafka.protocol.admin, which is not part of aiokafka's documented API.
    return type(arg).__name__.startswith("SaslAuthenticateRequest")


def install_kafka_credentials_filter() -> None:
    """Attach the filter to aiokafka's connection logger (once per process)."""
    logger = logging.getLogger(AIOKAFKA_CONN_LOGGER)
    if not any(isinstance(f, KafkaCredentialsFilter) for f in logger.filters):
        logger.addFilter(KafkaCredentialsFilter())
