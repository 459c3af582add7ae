"""Building frozen, slotted dataclasses on the per-record path without their ``__init__``.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``, to
get past the ``__setattr__`` that makes it frozen. Calling the setter of each field's slot
descriptor stores the same value in the same slot about twice as fast, which counts for the
few objects made per usage record (:class:`domain.intake.usage.Change`,
:class:`domain.intake.batch.Accepted`). Only for classes without ``__post_init__``: it is not
run. :class:`domain.intake.records.UsageRecord`, made for every record with six fields, is
built faster still: as a plain slotted twin that then takes its class.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MemberDescriptorType
from typing import Any


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of field ``name`` of the slotted class ``cls`` (``setter(obj, value)``)."""
    descriptor = cls.__dict__.get(name)
    if not isinstance(descriptor, MemberDescriptorType):
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} has a __post_init__ that slot setters would skip")
    setter: Callable[[Any, Any], None] = descriptor.__set__
    return setter
