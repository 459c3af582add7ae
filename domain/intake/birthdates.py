"""A plan record's ``birth_date`` (contract 1.2, 3.7): ``YYYY-MM-DD``, or ``--MM-DD`` when the
year is not known; a real date, Feb 29 allowed with or without a year."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final

_PATTERN: Final = re.compile(r"([0-9]{4}|-)-([0-9]{2})-([0-9]{2})")
#: A leap year, to validate ``--02-29``.
_LEAP: Final = 2000


@dataclass(frozen=True, slots=True)
class BirthDate:
    """A date of birth; ``year`` None when billing does not know it."""

    year: int | None
    month: int
    day: int

    def __str__(self) -> str:
        head = "-" if self.year is None else f"{self.year:04d}"
        return f"{head}-{self.month:02d}-{self.day:02d}"


def parse_birth_date(text: object) -> BirthDate:
    """The birth date of ``text`` (``YYYY-MM-DD`` or ``--MM-DD``, a real date); ValueError
    otherwise."""
    match = _PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("must be YYYY-MM-DD or --MM-DD")
    year = None if match[1] == "-" else int(match[1])
    month, day = int(match[2]), int(match[3])
    try:
        date(_LEAP if year is None else year, month, day)
    except ValueError:
        raise ValueError("must be a real date") from None
    if year is not None and year < 1:
        raise ValueError("must be a real date")
    return BirthDate(year, month, day)
