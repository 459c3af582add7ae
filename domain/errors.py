"""The one exceptions module of usage-moments.

Error tree::

    MomentsError                 base of every error this project raises on purpose
    ├── ConfigError              start-up refuses to go on; the message says what to change
    │   ├── SettingsError        a MOMENTS_* variable has a wrong value (names the variable)
    │   ├── CatalogError         config/plans.toml is invalid (names the plan and field)
    │   ├── TopologyError        topics are not co-partitioned, or cannot be created
    │   ├── BrokerAccessError    Kafka refuses this worker's connection (credentials,
    │   │                        certificates, protocol, address; names the setting)
    │   └── CodecError           a Kafka compression codec cannot be decoded (missing package)
    └── RecordError              one input record is unusable; it goes to a dead-letter topic
        ├── InvalidUsageRecord   a usage record breaks contract 1.1
        └── InvalidPlanRecord    an account-plans record breaks contract 1.2

Errors a user can cause carry a message that says what to change. ``RecordError``s
never stop the worker: they are counted and dead-lettered.
"""

from __future__ import annotations


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


class InvalidPlanRecord(RecordError):
    """An account-plans record that breaks contract 1.2."""
