"""The operators' message templates: which exist, which placeholders each may use, rendering.

Every event carries a ``message {title, body}`` ready to send (contract 3). The words live in
``config/messages.toml`` (``MOMENTS_MESSAGES_FILE``) so that operators can edit them without a
release: one ``title`` and ``body`` per kind and suggestion action, plus the ``[pace]`` and
``[overage]`` sentences some bodies include. Templates are rendered with ``str.format_map``
over already formatted strings, so a template decides wording, never number formats.

:func:`load_templates` checks at start-up that every template exists and uses only the
placeholders its kind and action provide (:data:`PLACEHOLDERS`); a mistake stops the worker
with a :class:`~domain.errors.ConfigError` naming the file, the template and the placeholder.

Aggregations (contract 1.4). A metric that is not a sum reads differently: seats are a level
("you have 10 of 10 seats"), storage a peak, active users a distinct count. A usage table
(:data:`USAGE_KINDS`) may hold a variant per aggregation, ``[threshold-near.upgrade.latest]``,
and the ``[pace]`` and ``[overage]`` tables a sub-table of sentences, ``[overage.latest]``; a
metric renders its aggregation's variant where there is one, else the plain template. A
``latest`` or ``max`` metric has no pace, so no ``{pace}``, ``{projected_total}`` or
``{projected_overage_cost}`` (:data:`PACELESS_MISSING`): validation refuses a plain template
using them unless the aggregation has its variant. The billing-anniversary tables may hold a
``levels`` variant, used when the recap holds a metric that is not a sum or a count (the
recap is then a list of levels, not of what was used).
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType
from typing import Final, Literal

from domain.common.bounded import remember
from domain.common.tomlfile import parse_toml, read_toml_text
from domain.errors import ConfigError
from domain.plans.catalog import AGGREGATIONS, Aggregation
from domain.rules.projection import PACELESS

_COMMON: Final = frozenset(
    {
        "account_id",  # acct-42
        "metric",  # api_calls
        "unit",  # API calls (catalog [metrics])
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "period_start_date",  # November 1, 2026
        "reset_date",  # December 1, 2026: the period end, when usage starts again from zero
        "total",  # 8,000: usage so far this period
        "projected_total",  # about-rounded period total at the current pace
        "rationale",  # the suggestion's rationale sentence
    }
)
_SUGGESTED: Final = frozenset(
    {
        "suggested_plan",  # Growth
        "suggested_price",  # $79
        "suggested_limit",  # 100,000, or "unlimited"
        "price_delta",  # $60: the price difference, without sign (wording says more or less)
    }
)
_THRESHOLD: Final = frozenset(
    {
        "limit",  # 10,000
        "percent",  # 80%: usage / limit, rounded down
        "level_percent",  # 80%: the level crossed
        "remaining",  # 2,000: limit - usage, at least 0
    }
)
_DROP: Final = frozenset(
    {
        "recent_days",  # 3
        "recent_span",  # the last 3 days
        "recent_total",  # 40
        "recent_daily",  # 13.3: recent usage per day
        "usual_daily",  # 1,200: expected usage per day
        "expected_total",  # 3,600: expected usage over the recent days
        "drop_percent",  # 97%: how far below expected
        "last_active_date",  # November 27, 2026
    }
)

_CHANGE: Final = frozenset(
    {
        "account_id",  # acct-42
        "plan_name",  # Growth: the plan after the change
        "plan_price",  # $79
        "period_word",  # month | week | day
        "change_date",  # November 3, 2026: the plan record's updated_at
        "rationale",  # the suggestion's rationale sentence
    }
)
_CHANGE_PLAN: Final = _CHANGE | {
    "old_plan_name",  # Starter
    "old_plan_price",  # $19
    "period_start_date",  # November 1, 2026: start of the current period
    "reset_date",  # December 1, 2026: its end
    "usage",  # 9,000 of 100,000 API calls (9%), 2 of 10 seats (20%); or "nothing used yet"
}
_CHANGE_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "plan_upgraded": _CHANGE_PLAN,
    "plan_downgraded": _CHANGE_PLAN,
    # Either way, when some metric is already past the new plan's limit this period.
    "plan_past_limit": _CHANGE_PLAN | {"past"},  # 500 API calls and 2 GB of storage
    "paused": _CHANGE | {"old_status"},  # active
    "resumed": _CHANGE | {"old_status"},
    "cancelled": _CHANGE | {"old_status"},
    "members_added": _CHANGE | {"old_members", "members", "added"},  # 3 members, 5 members
    "region_changed": _CHANGE | {"old_region", "region"},  # as published: CA, NY
}
_OVER: Final = frozenset(
    {
        "limit_date",  # November 20, 2026: the day the limit was reached
        "over",  # 6,000: usage past the limit
        "over_percent",  # 60%: usage past the limit as a share of it, rounded down
    }
)
_OVERAGE_MONEY: Final = frozenset(
    {
        "unit_price",  # $0.002: the plan's price per unit past the limit
        "overage_cost",  # $12: the overage so far at that price
        "projected_overage_cost",  # $45: the overage the period is heading for
    }
)
_RECOVERED: Final = frozenset(
    {
        "recent_days",  # 3
        "recent_span",  # the last 3 days
        "recent_total",  # 2,900
        "recent_daily",  # 966.7: recent usage per day
        "usual_daily",  # 1,000: expected usage per day
        "expected_total",  # 3,000
        "recovered_percent",  # 96%: recent usage as a share of the usual, rounded down
        "dropped_on_date",  # November 1, 2026: the first day of the drop
    }
)
_ANNIVERSARY: Final = frozenset(
    {
        "account_id",  # acct-42
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "period_start_date",  # November 1, 2026: the closed period's start
        "period_end_date",  # December 1, 2026: its end
        "periods_completed",  # 12
        "periods_text",  # 12 months
        "recap",  # 9,500 of 10,000 API calls (95%) and 2 GB of storage
        "rationale",  # the suggestion's rationale sentence
    }
)
_BIRTHDAY: Final = frozenset(
    {
        "account_id",  # acct-42
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "birthday_date",  # December 7, 2026: the day celebrated
        "rationale",  # the suggestion's rationale sentence
    }
)
_BIRTHDAY_AGE: Final = _BIRTHDAY | {"age", "age_ordinal"}  # 30, 30th
_ANNIVERSARY_YEARS: Final = _ANNIVERSARY | {"years", "years_text"}  # 2, 2 years
_ANNIVERSARY_SUGGESTED: Final = frozenset({"suggested_plan", "suggested_price", "price_delta"})
_MILESTONE: Final = frozenset(
    {
        "account_id",  # acct-42
        "metric",  # purchases
        "unit",  # purchases (catalog [metrics])
        "plan_name",  # Starter
        "plan_price",  # $19
        "period_word",  # month | week | day
        "milestone",  # 50: the highest milestone reached
        "celebration",  # your 50th purchase (an ordinal when it reads naturally), 2.5 GB of storage
        "reached",  # 10 and 50: every milestone this record reached
        "lifetime_total",  # 52: the lifetime total after the record
        "reward",  # 15% off your next order (the catalog's [[milestones]] reward)
        "rationale",  # the suggestion's rationale sentence
    }
)

PLACEHOLDERS: Final[Mapping[tuple[str, str], frozenset[str]]] = MappingProxyType(
    {
        ("billing-anniversary", "upgrade"): _ANNIVERSARY | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary", "downgrade"): _ANNIVERSARY | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary", "none"): _ANNIVERSARY,
        # Whole years completed: the same actions, celebrating the years.
        ("billing-anniversary-years", "upgrade"): _ANNIVERSARY_YEARS | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary-years", "downgrade"): _ANNIVERSARY_YEARS | _ANNIVERSARY_SUGGESTED,
        ("billing-anniversary-years", "none"): _ANNIVERSARY_YEARS,
        ("threshold-near", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | {"pace"},
        ("threshold-near", "none"): _COMMON | _THRESHOLD | {"pace"},
        ("threshold-hit", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | {"limit_date", "over"},
        ("threshold-hit", "none"): _COMMON | _THRESHOLD | {"limit_date", "over"},
        ("sudden-drop", "pause"): _COMMON | _DROP,
        ("sudden-drop", "downgrade"): _COMMON | _DROP | _SUGGESTED,
        ("sudden-drop", "none"): _COMMON | _DROP,
        ("milestone", "reward"): _MILESTONE,
        # Contract 3.7: an offer ({offer}: the catalog's offers.birthday) or nothing; the
        # -age table when the year of birth is known and [birthday] show_age is true.
        ("birthday", "offer"): _BIRTHDAY | {"offer"},
        ("birthday", "none"): _BIRTHDAY,
        ("birthday-age", "offer"): _BIRTHDAY_AGE | {"offer"},
        ("birthday-age", "none"): _BIRTHDAY_AGE,
        # The two sentences a threshold-near body gets as {pace}.
        ("pace", "reaches_limit"): (_COMMON - {"rationale"}) | _THRESHOLD | {"limit_date"},
        ("pace", "within_limit"): (_COMMON - {"rationale"}) | _THRESHOLD,
        **{("account-change", key): names for key, names in _CHANGE_KEYS.items()},
        # threshold-hit above level 1.0 (contract 3.1); {overage} is one [overage] sentence.
        ("threshold-over", "upgrade"): _COMMON | _THRESHOLD | _SUGGESTED | _OVER | {"overage"},
        ("threshold-over", "none"): _COMMON | _THRESHOLD | _OVER | {"overage"},
        ("overage", "priced"): (_COMMON - {"rationale"}) | _THRESHOLD | _OVER | _OVERAGE_MONEY,
        ("overage", "unpriced"): (_COMMON - {"rationale"}) | _THRESHOLD | _OVER,
        ("usage-recovered", "resume"): _COMMON | _RECOVERED,
        ("usage-recovered", "none"): _COMMON | _RECOVERED,
    }
)
"""Placeholders each template may use, by ``(table, key)`` of ``messages.toml``: the kind and
suggestion action for messages, ``("pace", ...)`` and ``("overage", ...)`` for the sentences
that other templates include as ``{pace}`` and ``{overage}``."""

_SENTENCES: Final = ("pace", "overage")
"""Tables of sentences (one string per key) rather than of ``{title, body}`` messages."""

_FIELDS: Final = ("title", "body")

USAGE_KINDS: Final = frozenset(
    {"threshold-near", "threshold-hit", "threshold-over", "sudden-drop", "usage-recovered"}
)
"""Tables whose messages speak of one metric, so may have a variant per aggregation."""

VARIANTS: Final[tuple[Aggregation, ...]] = tuple(a for a in AGGREGATIONS if a != "sum")
"""Aggregations a usage table or a sentence table may have a variant for (a sum is plain)."""

PACELESS_MISSING: Final = frozenset({"pace", "projected_total", "projected_overage_cost"})
"""Placeholders a metric of a :data:`PACELESS` aggregation does not have."""

LEVELS: Final = "levels"
"""The billing-anniversary variant for a recap holding a metric that is not a sum or a count."""

_ANNIVERSARY_TABLES: Final = frozenset({"billing-anniversary", "billing-anniversary-years"})


def allowed(table: str, key: str, aggregation: Aggregation = "sum") -> frozenset[str]:
    """The placeholders template ``(table, key)`` has for a metric of ``aggregation``."""
    names = PLACEHOLDERS[(table, key)]
    return names - PACELESS_MISSING if aggregation in PACELESS else names


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message: a short title and a body of a few sentences."""

    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Templates:
    """The validated templates of one file.

    ``messages[(kind, action)]`` is a ``{"title": ..., "body": ...}`` pair; ``pace`` holds the
    ``reaches_limit`` and ``within_limit`` sentences, ``overage`` the ``priced`` and
    ``unpriced`` sentences of an overage message.
    """

    source: str
    messages: Mapping[tuple[str, str], Mapping[str, str]]
    pace: Mapping[str, str]
    overage: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: ``(table, key, variant)`` -> the variant's ``{"title", "body"}`` (messages) or its
    #: sentence (``[pace]``, ``[overage]``); variants are aggregations, or ``levels``.
    variants: Mapping[tuple[str, str, str], Mapping[str, str] | str] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def render(
        self, kind: str, action: str, values: Mapping[str, str], variant: str | None = None
    ) -> Message:
        """The message of ``kind`` for a suggestion ``action``, filled with ``values``: its
        ``variant`` (an aggregation, or ``levels``) where the file has one, else the plain one."""
        key = (id(self), kind, action, variant)
        held = _renderers.get(key)
        if held is None or held[0] is not self:
            template = self.messages[(kind, action)]
            if variant is not None:
                found = self.variants.get((kind, action, variant))
                if isinstance(found, Mapping):
                    template = found
            title, body = _compiled_of(template["title"]), _compiled_of(template["body"])
            held = remember(_renderers, key, (self, title, body), _COMPILED_MAX)
        return Message(held[1](values).strip(), held[2](values).strip())

    def sentence(
        self,
        table: Literal["pace", "overage"],
        key: str,
        values: Mapping[str, str],
        variant: str | None = None,
    ) -> str:
        """The ``[pace]`` or ``[overage]`` sentence ``key``, filled with ``values``: the
        ``variant`` aggregation's where the file has one, else the plain one."""
        sentences = self.pace if table == "pace" else self.overage
        template = sentences[key]
        if variant is not None:
            found = self.variants.get((table, key, variant))
            if isinstance(found, str):
                template = found
        return _fill(template, values).strip()


def _fill(template: str, values: Mapping[str, str]) -> str:
    # Validation guarantees that every placeholder is one the caller supplies.
    return _compiled_of(template)(values)


_Compiled = Callable[[Mapping[str, str]], str]

# Each template text compiled once (by its text, so any Templates object shares them): a file
# has about a hundred. And the compiled title and body Templates.render uses, by (templates,
# kind, action, variant): Templates are immutable (read once at start-up); an entry holds its
# Templates, so the id in its key stays its. Bounded all the same.
_COMPILED_MAX: Final = 1024
_compiled: dict[str, _Compiled] = {}
_renderers: dict[tuple[int, str, str, str | None], tuple[Templates, _Compiled, _Compiled]] = {}


def _compiled_of(template: str) -> _Compiled:
    """:func:`_compile` of ``template``, remembered."""
    compiled = _compiled.get(template)
    if compiled is None:
        compiled = remember(_compiled, template, _compile(template), _COMPILED_MAX)
    return compiled


def _compile(template: str) -> _Compiled:
    """``template.format_map`` as a function of the values, made faster: ``str.format_map``
    parses the template on every call, which costs more than filling it. A template of plain
    ``{name}`` placeholders (all that validation lets through) becomes a ``%``-format of its
    text (``%`` doubled, braces undoubled) filled from the values' placeholders in order; any
    other template (a format spec, an attribute, a positional field) keeps ``format_map``."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return template.format_map  # the same error, on each call
    names: list[str] = []
    pieces: list[str] = []
    for literal, name, spec, conversion in parts:
        pieces.append(literal.replace("%", "%%"))
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            return template.format_map
        names.append(name)
        pieces.append("%s")
    text = "".join(pieces)
    if not names:
        plain = text.replace("%%", "%")
        return lambda values: plain
    if len(names) == 1:
        name = names[0]
        return lambda values: text % (values[name],)
    get = operator.itemgetter(*names)
    return lambda values: text % get(values)


def load_templates(
    path: str | PathLike[str], aggregations: Collection[Aggregation] = AGGREGATIONS
) -> Templates:
    """Read and validate the message templates at ``path`` (:class:`ConfigError` if unusable)
    for metrics of ``aggregations`` (the worker passes those its catalog uses)."""
    text = read_toml_text(
        path, what="the message templates", setting="MOMENTS_MESSAGES_FILE", error=ConfigError
    )
    return parse_templates(text, str(path), aggregations)


def parse_templates(
    text: str,
    source: str = "config/messages.toml",
    aggregations: Collection[Aggregation] = AGGREGATIONS,
) -> Templates:
    """Validate the TOML templates ``text``; ``source`` names it in error messages.

    Every usage template must render for a metric of each of ``aggregations``: where a plain
    template uses a placeholder an aggregation lacks (``{pace}`` for a ``latest`` metric), the
    file must have that aggregation's variant.
    """
    document = parse_toml(text, source, ConfigError)

    tables = sorted({table for table, _ in PLACEHOLDERS})
    unknown = sorted(set(document) - set(tables))
    if unknown:
        raise ConfigError(
            f"{source}: unknown table {', '.join(f'[{u}]' for u in unknown)}; "
            f"accepted: {', '.join(f'[{t}]' for t in tables)}"
        )
    messages: dict[tuple[str, str], Mapping[str, str]] = {}
    sentences: dict[str, dict[str, str]] = {table: {} for table in _SENTENCES}
    variants: dict[tuple[str, str, str], Mapping[str, str] | str] = {}
    for table in tables:
        section = document.get(table)
        keys = sorted(key for t, key in PLACEHOLDERS if t == table)
        if not isinstance(section, dict):
            raise ConfigError(
                f"{source}: [{table}] missing; it needs {', '.join(keys)} "
                f"({'sentences' if table in _SENTENCES else 'tables with a title and a body'})"
            )
        if table in _SENTENCES:
            sentences[table], found = _sentences(section, table, keys, source)
            variants.update(found)
            continue
        extra = sorted(set(section) - set(keys))
        if extra:
            raise ConfigError(
                f"{source}: [{table}] unknown key {', '.join(map(repr, extra))}; "
                f"accepted: {', '.join(map(repr, keys))}"
            )
        kinds = _variant_names(table)
        for key in keys:
            where = f"[{table}.{key}]"
            entry = section.get(key)
            if not isinstance(entry, dict):
                raise ConfigError(f"{source}: {where} missing; it needs a title and a body")
            extra = sorted(set(entry) - set(_FIELDS) - set(kinds))
            if extra:
                accepted = ", ".join(map(repr, (*_FIELDS, *kinds)))
                raise ConfigError(
                    f"{source}: {where} unknown key {', '.join(map(repr, extra))}; "
                    f"accepted: {accepted}"
                )
            messages[(table, key)] = _message(entry, where, allowed(table, key), source)
            for name in kinds:
                variant = entry.get(name)
                if variant is None:
                    continue
                if not isinstance(variant, dict):
                    raise ConfigError(
                        f"{source}: [{table}.{key}.{name}] must be a table with a title and a body"
                    )
                names = allowed(table, key, name) if name in VARIANTS else allowed(table, key)
                variants[(table, key, name)] = _message(
                    variant, f"[{table}.{key}.{name}]", names, source
                )
    templates = Templates(
        source,
        MappingProxyType(messages),
        MappingProxyType(sentences["pace"]),
        MappingProxyType(sentences["overage"]),
        MappingProxyType(variants),
    )
    _check_aggregations(templates, aggregations)
    return templates


def _variant_names(table: str) -> tuple[str, ...]:
    """The variants a message table may hold: aggregations for a usage table, ``levels`` for
    an anniversary table, none for the others."""
    if table in USAGE_KINDS:
        return VARIANTS
    return (LEVELS,) if table in _ANNIVERSARY_TABLES else ()


def _message(
    entry: dict[str, object], where: str, names: frozenset[str], source: str
) -> Mapping[str, str]:
    """A ``{title, body}`` pair checked against the placeholders ``names``."""
    return MappingProxyType(
        {f: _template(entry.get(f), f"{where} {f}", names, source) for f in _FIELDS}
    )


def _sentences(
    section: dict[str, object], table: str, keys: list[str], source: str
) -> tuple[dict[str, str], dict[tuple[str, str, str], str]]:
    """The sentences of ``[pace]`` or ``[overage]``, and those of their aggregation
    sub-tables (``[overage.latest]``), each checked against its placeholders."""
    extra = sorted(set(section) - set(keys) - set(VARIANTS))
    if extra:
        raise ConfigError(
            f"{source}: [{table}] unknown key {', '.join(map(repr, extra))}; "
            f"accepted: {', '.join(map(repr, (*keys, *VARIANTS)))}"
        )
    plain = {
        key: _template(section.get(key), f"[{table}] {key}", allowed(table, key), source)
        for key in keys
    }
    variants: dict[tuple[str, str, str], str] = {}
    for name in VARIANTS:
        sub = section.get(name)
        if sub is None:
            continue
        where = f"[{table}.{name}]"
        if not isinstance(sub, dict):
            raise ConfigError(f"{source}: {where} must be a table of sentences")
        extra = sorted(set(sub) - set(keys))
        if extra:
            raise ConfigError(
                f"{source}: {where} unknown key {', '.join(map(repr, extra))}; "
                f"accepted: {', '.join(map(repr, keys))}"
            )
        for key, value in sub.items():
            names = allowed(table, key, name)
            variants[(table, key, name)] = _template(value, f"{where} {key}", names, source)
    return plain, variants


def _check_aggregations(templates: Templates, aggregations: Collection[Aggregation]) -> None:
    """Every template a metric of each of ``aggregations`` renders (its variant, else the plain
    one) uses only placeholders that metric has."""
    for aggregation in sorted(set(aggregations) & set(VARIANTS)):
        for (table, key), message in templates.messages.items():
            if table not in USAGE_KINDS or (table, key, aggregation) in templates.variants:
                continue
            for f in _FIELDS:
                _lacks(templates, message[f], f"[{table}.{key}] {f}", table, key, aggregation)
        for table in _SENTENCES:
            if table == "pace" and aggregation in PACELESS:
                continue  # a level has no pace: no threshold-near message includes one
            plain = templates.pace if table == "pace" else templates.overage
            for key, sentence in plain.items():
                if (table, key, aggregation) not in templates.variants:
                    _lacks(templates, sentence, f"[{table}] {key}", table, key, aggregation)


def _lacks(
    templates: Templates, text: str, where: str, table: str, key: str, aggregation: Aggregation
) -> None:
    names = allowed(table, key, aggregation)
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None and name not in names:
            sub = f"[{table}.{key}.{aggregation}]"
            if table in _SENTENCES:
                sub = f"{key} in [{table}.{aggregation}]"
            raise ConfigError(
                f"{templates.source}: {where}: uses {{{name}}}, which a metric aggregated as "
                f"{aggregation!r} does not have (a level has no pace); add {sub} worded for it"
            )


def _template(value: object, where: str, allowed: frozenset[str], source: str) -> str:
    """``value`` if it is a non-empty template using only ``allowed`` plain placeholders."""
    if value is None:
        raise ConfigError(f"{source}: {where}: missing")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {where}: must be a non-empty string")
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {where}: {exc}; write a literal brace as {{{{ or }}}}"
        ) from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in allowed:
            raise ConfigError(
                f"{source}: {where}: unknown placeholder {{{name}}}; "
                f"known here: {', '.join(f'{{{p}}}' for p in sorted(allowed))}"
            )
        if spec or conversion:
            raise ConfigError(
                f"{source}: {where}: placeholder {{{name}}} has a format or conversion; "
                "values arrive formatted, write it as a plain {name}"
            )
    return value
