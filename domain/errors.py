"""The one exceptions module of usage-moments.

Error tree::

    MomentsError                 base of every error this project raises on purpose
    ├── ConfigError              start-up refuses to go on; the message says what to change
    │   ├── SettingsError        a MOMENTS_* variable has a wrong value (names the variable)
    │   ├── CatalogError         config/plans.toml is invalid (names the plan and field)
    │   ├── EndpointsError       config/endpoints.toml is invalid (names the endpoint and field)
    │   ├── TopologyError        topics are not co-partitioned, or cannot be created
    │   ├── BrokerAccessError    Kafka refuses this worker's connection (credentials,
    │   │                        certificates, protocol, address; names the setting)
    │   └── CodecError           a Kafka compression codec cannot be decoded (missing package)
    └── RecordError              one input record is unusable; it goes to a dead-letter topic
        ├── InvalidUsageRecord   a usage record breaks contract 1.1 (or a CloudEvent 1.4)
        │   └── StructuredCloudEvent  not an error: the value is a CloudEvent (contract 1.4)
        └── InvalidPlanRecord    an account-plans record breaks contract 1.2

Errors a user can cause carry a message that says what to change. ``RecordError``s
never stop the worker: they are counted and dead-lettered.
"""

from __future__ import annotations

from typing import Any


class MomentsError(Exception):
    """Base of every error raised on purpose by usage-moments."""


class ConfigError(MomentsError):
    """Start-up cannot go on; the message says what to change."""


class SettingsError(ConfigError):
    """A MOMENTS_* environment variable holds a value that is not accepted."""

    def __init__(self, variable: str, value: str, accepted: str) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        super().__init__(f"{variable}={value!r} is not valid: expected {accepted}")


class CatalogError(ConfigError):
    """The plan catalog is invalid."""


class EndpointsError(ConfigError):
    """The webhook endpoints file of ``moments deliver`` is invalid; names endpoint and field."""


class TopologyError(ConfigError):
    """Kafka topics are not laid out as the contract needs (e.g. not co-partitioned)."""


class BrokerAccessError(ConfigError):
    """Kafka cannot be reached or refuses the configured credentials; names the setting.

    Raised by the worker's pre-flight check, before any client that would retry.
    """

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class CodecError(ConfigError):
    """A Kafka compression codec cannot be decoded: the installation lacks a package."""


class RecordError(MomentsError):
    """One input record is unusable. It is dead-lettered, never fatal."""


class InvalidUsageRecord(RecordError):
    """A usage record that breaks contract 1.1."""


class StructuredCloudEvent(InvalidUsageRecord):
    """The usage value is a CloudEvent in structured mode, not a 1.1 record (contract 1.4).

    Raised by ``parse_usage`` on the slow path of a record without ``record_id``, with the
    object it already parsed (``event``), so the caller hands that to ``parse_cloudevent``
    instead of parsing the JSON again. A caller that does not read CloudEvents dead-letters
    it like any invalid record.
    """

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        super().__init__(
            "record_id: missing; the value is a CloudEvent (it has specversion), which this "
            "topic's reader does not take"
        )


class InvalidPlanRecord(RecordError):
    """An account-plans record that breaks contract 1.2."""
