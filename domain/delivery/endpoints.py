"""The webhook endpoints of ``config/endpoints.toml`` (``MOMENTS_ENDPOINTS_FILE``): what each
one is sent, where, signed with which secret.

::

    [[endpoints]]
    name = "crm"                         # [a-z0-9-]{1,40}, unique: names its topics and group
    url = "https://crm.example.com/hooks/moments"
    kinds = ["threshold-near", "threshold-hit", "custom.*"]   # or ["*"]
    plans = ["starter", "growth"]        # optional: only events of accounts on these plans
    accounts = ["acct-0042"]             # optional: only events of these accounts
    secret_env = "CRM_WEBHOOK_SECRET"    # an env var holding whsec_<base64> (or secret = "...")
    previous_secret_env = "CRM_WEBHOOK_SECRET_OLD"   # optional, while rotating
    timeout_s = 10                       # optional: seconds one attempt may take

Every error names the endpoint and the field. A secret is never part of a message or a repr.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Final
from urllib.parse import urlsplit

from domain.common.tomlfile import parse_toml, read_toml_text
from domain.delivery.signing import SECRET_PREFIX, Secret, parse_secret
from domain.errors import EndpointsError

NAME: Final = re.compile(r"[a-z0-9-]{1,40}")
#: A kind pattern: a built-in kind, ``custom.<rule id>``, ``custom.*`` or ``*``.
_CUSTOM: Final = re.compile(r"custom\.(\*|[a-z0-9-]{1,40})")
#: An environment variable's name (POSIX: letters, digits and _, not starting with a digit).
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_TIMEOUT_S: Final = 300.0
_Fail = Callable[[str, str], EndpointsError]
_FIELDS: Final = frozenset(
    {
        "name",
        "url",
        "kinds",
        "plans",
        "accounts",
        "secret",
        "secret_env",
        "previous_secret",
        "previous_secret_env",
        "timeout_s",
    }
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One configured endpoint. ``plans`` and ``accounts`` are None when not filtered."""

    name: str
    url: str
    kinds: tuple[str, ...]
    plans: frozenset[str] | None
    accounts: frozenset[str] | None
    #: The current secret first, then the previous one while a rotation lasts.
    secrets: tuple[Secret, ...] = field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def wants_kind(self, kind: str) -> bool:
        """Whether events of ``kind`` (``threshold-hit``, ``custom.<id>``) go here, whatever
        their plan and account."""
        return any(kind_matches(pattern, kind) for pattern in self.kinds)

    def wants(self, kind: str, plan_id: str | None, account_id: str) -> bool:
        """Whether an event of ``kind`` about ``account_id`` on ``plan_id`` goes here."""
        if not self.wants_kind(kind):
            return False
        if self.plans is not None and plan_id not in self.plans:
            return False
        return self.accounts is None or account_id in self.accounts

    def kinds_matching_nothing(self, kinds: Sequence[str]) -> tuple[str, ...]:
        """The endpoint's exact ``kinds`` (not ``*`` or ``custom.*``, which stand for rules
        to come too) that are none of ``kinds``, the catalog's event kinds: a
        ``custom.<id>`` naming no rule is most likely a typo."""
        return tuple(p for p in self.kinds if p not in ("*", "custom.*") and p not in kinds)


def shown_url(url: str) -> str:
    """``url`` as logs and dead letters may show it: scheme, host and port only (a webhook
    URL's path or query often holds a token, and its user info a password)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # not a URL urllib reads (the endpoints file refuses those)
        return "<url not shown>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}/..."


def kind_matches(pattern: str, kind: str) -> bool:
    """``*`` matches every kind, ``custom.*`` every rule's kind, anything else itself."""
    if pattern == "*":
        return True
    if pattern == "custom.*":
        return kind.startswith("custom.")
    return pattern == kind


def parse_endpoints(
    document: Mapping[str, Any],
    env: Mapping[str, str],
    known_kinds: Sequence[str],
    source: str = "endpoints",
) -> tuple[Endpoint, ...]:
    """The endpoints of a parsed ``endpoints.toml``; secrets named by ``*_env`` read from
    ``env``; ``known_kinds`` are the built-in kinds (a ``custom.<id>`` is checked for its form
    only: the catalog's rules may change without touching this file).

    Raises:
        EndpointsError: the first problem, naming ``source``, the endpoint and the field.
    """
    unknown = sorted(set(document) - {"endpoints"})
    if unknown:
        raise EndpointsError(f"{source}: unknown table or key {unknown[0]!r} (only [[endpoints]])")
    raw = document.get("endpoints", [])
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise EndpointsError(f"{source}: endpoints must be an array of tables ([[endpoints]])")
    out: list[Endpoint] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        endpoint = _endpoint(entry, env, known_kinds, f"{source}: endpoint #{index + 1}")
        if endpoint.name in seen:
            raise EndpointsError(f"{source}: endpoint {endpoint.name!r}: name: used twice")
        seen.add(endpoint.name)
        out.append(endpoint)
    return tuple(out)


def _endpoint(
    entry: Mapping[str, Any], env: Mapping[str, str], known_kinds: Sequence[str], where: str
) -> Endpoint:
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise EndpointsError(f"{where}: name: expected 1 to 40 of a-z, 0-9 and -, got {name!r}")
    where = where.rsplit(":", 1)[0] + f": endpoint {name!r}"

    def fail(key: str, problem: str) -> EndpointsError:
        return EndpointsError(f"{where}: {key}: {problem}")

    extra = sorted(set(entry) - _FIELDS)
    if extra:
        raise fail(extra[0], f"unknown field (accepted: {', '.join(sorted(_FIELDS))})")
    url = entry.get("url")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is not None:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError as exc:  # an unclosed [IPv6 host, a port out of range
        raise fail("url", f"not a valid URL ({exc})") from None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("url", "expected an http:// or https:// URL with a host")
    kinds = _strings(entry, "kinds", fail, required=True)
    for pattern in kinds:
        if pattern != "*" and pattern not in known_kinds and not _CUSTOM.fullmatch(pattern):
            raise fail(
                "kinds",
                f"unknown kind {pattern!r}; accepted: *, {', '.join(known_kinds)}, "
                "custom.<rule id> or custom.*",
            )
    plans = _strings(entry, "plans", fail, required=False)
    accounts = _strings(entry, "accounts", fail, required=False)
    secrets = [_secret(entry, env, "secret", fail, required=True)]
    previous = _secret(entry, env, "previous_secret", fail, required=False)
    if previous is not None:
        secrets.append(previous)
    timeout = entry.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        raise fail("timeout_s", f"expected seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    return Endpoint(
        name=name,
        url=str(url),
        kinds=tuple(kinds),
        plans=frozenset(plans) if "plans" in entry else None,
        accounts=frozenset(accounts) if "accounts" in entry else None,
        secrets=tuple(s for s in secrets if s is not None),
        timeout_s=float(timeout),
    )


def _strings(entry: Mapping[str, Any], key: str, fail: _Fail, *, required: bool) -> list[str]:
    value = entry.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise fail(key, "expected a non-empty list of non-empty strings")
    return list(value)


def _secret(
    entry: Mapping[str, Any], env: Mapping[str, str], key: str, fail: _Fail, *, required: bool
) -> Secret | None:
    """The secret of ``key`` given inline or, preferably, by ``<key>_env``."""
    inline, var = entry.get(key), entry.get(f"{key}_env")
    if inline is not None and var is not None:
        raise fail(key, f"give {key} or {key}_env, not both")
    if inline is None and var is None:
        if required:
            raise fail(f"{key}_env", f"missing: name an environment variable (or give {key})")
        return None
    if var is not None:
        if not isinstance(var, str) or not var:
            raise fail(f"{key}_env", "expected the name of an environment variable")
        if not _ENV_NAME.fullmatch(var) or var.startswith(SECRET_PREFIX):
            # Never echoed: it may be the secret itself, put where its variable's name goes.
            raise fail(
                f"{key}_env",
                f"expected the name of an environment variable (letters, digits, _), not a "
                f"value (a {SECRET_PREFIX} secret goes in that variable)",
            )
        text = env.get(var)
        if not text:
            raise fail(f"{key}_env", f"the environment variable {var} is not set")
        named = f"{key}_env ({var})"
    else:
        if not isinstance(inline, str):
            raise fail(key, "expected a string whsec_<base64>")
        text, named = inline, key
    try:
        return parse_secret(text.strip())
    except ValueError as exc:
        raise fail(named, str(exc)) from None


def load_endpoints(
    path: str | PathLike[str], env: Mapping[str, str], known_kinds: Sequence[str]
) -> tuple[Endpoint, ...]:
    """Read and check the endpoints file at ``path`` (``MOMENTS_ENDPOINTS_FILE``).

    Raises:
        EndpointsError: unreadable, not TOML, or an endpoint is invalid (see
            :func:`parse_endpoints`).
    """
    text = read_toml_text(
        path, what="the endpoints file", setting="MOMENTS_ENDPOINTS_FILE", error=EndpointsError
    )
    return parse_endpoints(parse_toml(text, str(path), EndpointsError), env, known_kinds, str(path))
