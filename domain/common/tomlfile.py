"""The TOML files operators write (plan catalog, message templates): read and parsed with
errors that say what to change."""

from __future__ import annotations

import tomllib
from os import PathLike
from pathlib import Path
from typing import Any

from domain.errors import ConfigError


def read_toml_text(
    path: str | PathLike[str], *, what: str, setting: str, error: type[ConfigError]
) -> str:
    """The UTF-8 text of the file at ``path``, else ``error``: ``what`` names the file in the
    message (``the plan catalog``) and ``setting`` the variable that points to it."""
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(
            f"{source}: cannot read {what} ({exc.strerror or exc}); "
            f"set {setting} to the path of a readable TOML file"
        ) from None
    except UnicodeDecodeError as exc:
        raise error(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_toml(text: str, source: str, error: type[ConfigError]) -> dict[str, Any]:
    """The TOML document ``text``, else ``error`` naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
