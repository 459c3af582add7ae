"""The JSON Schema of moment events and the field table of ``docs/events.md``, from the models.

Both are read from :mod:`domain.wording.payloads`. The schema is one object schema: the
properties of :class:`~domain.wording.payloads.MomentEvent` (every field, widest type), then one
conditional per kind model saying what that kind requires, what it must not carry (the
``KIND_ONLY`` fields its model lacks) and how its fields are narrower than the union's (a
threshold's ``usage.limit`` is a number, its suggestion ``upgrade`` or ``none``), then the
rules no type can say. ``scripts/gen-event-schema.py`` writes both copies;
``tests/unit/test_event_schema.py`` fails when a committed copy differs.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator, Mapping
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from domain.wording.payloads import (
    KIND_MODELS,
    KIND_ONLY,
    KIND_RULES,
    Actions,
    Define,
    Doc,
    MomentEvent,
    Presence,
    Row,
    Rule,
    Schema,
)

SCHEMA_ID: Final = "urn:usage-moments:schema:moment-event:1"
_TITLE: Final = "usage-moments moment event"
_DESCRIPTION: Final = (
    "The value of every message on the moments.<kind> topics, one topic per kind (contract "
    "section 3). Keyed by account_id. Changes are additive: objects allow properties this schema "
    "does not name, and consumers must ignore fields they do not know. Fields that do not apply "
    "to a kind are absent. Instants are RFC 3339 in UTC with a Z, milliseconds written only when "
    "not zero. Quantities, limits, prices and totals are exact JSON numbers: integers when whole "
    "and below 2^63, else the shortest text of a double (docs/events.md). Ratios are rounded "
    "down to 6 decimals."
)
_JSON_TYPES: Final[Mapping[object, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}

TABLE_HEADER: Final = "| field | type | null | meaning |\n|---|---|---|---|"
PRESENCE_HEADER: Final = "| field |"


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """A type without ``Required``/``NotRequired``/``Annotated``, and its metadata in order."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(tp)
        if origin in (Required, NotRequired):
            tp = get_args(tp)[0]
        elif origin is Annotated:
            tp, *more = get_args(tp)
            metadata = [*more, *metadata] if metadata else list(more)
        else:
            return tp, metadata


def _fields(model: Any) -> dict[str, Any]:
    return get_type_hints(model, include_extras=True)


def _choice(values: tuple[Any, ...]) -> dict[str, Any]:
    return {"const": values[0]} if len(values) == 1 else {"enum": list(values)}


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {} if rule.description is None else {"description": rule.description}
    out["if"] = {"required": [rule.key], "properties": {rule.key: _choice(rule.values)}}
    out["then"] = dict(rule.then)
    if rule.otherwise is not None:
        out["else"] = dict(rule.otherwise)
    return out


class _Builder:
    """Turns annotated types into schema nodes, collecting ``$defs`` in order of first use."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def node(self, tp: Any) -> dict[str, Any]:
        base, metadata = _unwrap(tp)
        out: dict[str, Any] = {}
        for item in metadata:
            if isinstance(item, Doc):
                out["description"] = item.text
        define = next((m for m in metadata if isinstance(m, Define)), None)
        if define is not None:
            if define.name not in self.defs:
                self.defs[define.name] = {"description": define.description}  # keeps the order
                body = self._body(base, metadata)
                if define.rules:
                    body["allOf"] = [_rule(rule) for rule in define.rules]
                self.defs[define.name].update(body)
            out["$ref"] = f"#/$defs/{define.name}"
        else:
            out.update(self._body(base, metadata))
        for item in metadata:
            if isinstance(item, Actions):
                out["properties"] = {"action": _choice(item.actions)}
        return out

    def _body(self, base: Any, metadata: list[Any]) -> dict[str, Any]:
        keywords: dict[str, Any] = {}
        for item in metadata:
            if isinstance(item, Schema):
                keywords.update(item.keywords)
        origin = get_origin(base)
        if origin is Literal:
            return {**_choice(get_args(base)), **keywords}
        if origin in (Union, types.UnionType):
            members = get_args(base)
            present = [m for m in members if m is not type(None)]
            if len(present) == 1 and any(isinstance(m, Define) for m in _unwrap(present[0])[1]):
                return {"oneOf": [self.node(present[0]), {"type": "null"}], **keywords}
            if len(present) == 1 and is_typeddict(_unwrap(present[0])[0]):
                # An object or null (projection): the object's node, null added to its type.
                node = self.node(present[0])
                return {**node, "type": [node["type"], "null"], **keywords}
            return {"type": [_JSON_TYPES[_unwrap(m)[0]] for m in members], **keywords}
        if origin is list:
            return {"type": "array", **keywords, "items": self.node(get_args(base)[0])}
        if is_typeddict(base):
            hints = _fields(base)
            return {
                "type": "object",
                "required": [name for name in hints if name in base.__required_keys__],
                "properties": {name: self.node(tp) for name, tp in hints.items()},
            }
        return {"type": _JSON_TYPES[base], **keywords}


def _narrowing(kind: Mapping[str, Any], union: Mapping[str, Any]) -> dict[str, Any] | None:
    """What ``kind``'s schema of a field adds to the union's: more required properties,
    narrower types; descriptions aside. None when it adds nothing."""
    if "properties" in kind and "properties" in union:
        out: dict[str, Any] = {}
        extra = [r for r in kind.get("required", ()) if r not in union.get("required", ())]
        if extra:
            out["required"] = extra
        narrowed = {}
        for name, sub in kind["properties"].items():
            found = _narrowing(sub, union["properties"].get(name, {}))
            if found is not None:
                narrowed[name] = found
        if narrowed:
            out["properties"] = narrowed
        return out or None
    diff = {k: v for k, v in kind.items() if k != "description" and union.get(k) != v}
    return diff or None


def _description(model: Any) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _conditionals(builder: _Builder, union: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One conditional per kind model, each followed by the rules of its kinds."""
    hints = _fields(MomentEvent)
    only = [name for name, tp in hints.items() if KIND_ONLY in _unwrap(tp)[1]]
    for model in KIND_MODELS:
        fields = _fields(model)
        kinds = get_args(_unwrap(fields["kind"])[0])
        # A Literal of kinds, or a pattern (custom.<rule id>).
        condition = _choice(kinds) if kinds else _kind_pattern(model)
        required = [
            name
            for name in hints
            if name in model.__required_keys__ and name not in MomentEvent.__required_keys__
        ]
        properties: dict[str, Any] = {name: False for name in only if name not in fields}
        for name in hints:
            if name in fields and name != "kind":  # the condition itself says the kind
                found = _narrowing(builder.node(fields[name]), union[name])
                if found is not None:
                    properties[name] = found
        then: dict[str, Any] = {}
        if required:
            then["required"] = required
        if properties:
            then["properties"] = properties
        yield {
            "description": _description(model),
            "if": {"required": ["kind"], "properties": {"kind": condition}},
            "then": then,
        }
        for rule in KIND_RULES:
            if set(rule.values) <= set(kinds):
                yield _rule(rule)


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every moment event."""
    builder = _Builder()
    properties = {name: builder.node(tp) for name, tp in _fields(MomentEvent).items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": _TITLE,
        "description": _DESCRIPTION,
        "type": "object",
        "required": [name for name in properties if name in MomentEvent.__required_keys__],
        "properties": properties,
        "allOf": list(_conditionals(builder, properties)),
        "$defs": builder.defs,
    }


def _choices_text(values: tuple[Any, ...]) -> str:
    quoted = [f"`{v}`" for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _row_of(name: str, tp: Any) -> tuple[str, Row]:
    base, metadata = _unwrap(tp)
    row = next((m for m in metadata if isinstance(m, Row)), None)
    if row is None:
        raise ValueError(f"the field {name} has no Row for the field table")
    if "{choices}" in row.type:
        row = Row(row.type.format(choices=_choices_text(get_args(base))), row.null, row.meaning)
    return name, row


def field_table() -> str:
    """The field table of ``docs/events.md``: every field of :class:`MomentEvent` and of its
    objects, one row each; neighbours with the same texts share a row."""
    named: list[tuple[str, Row]] = []
    for name, tp in _fields(MomentEvent).items():
        named.append(_row_of(name, tp))
        base, _ = _unwrap(tp)
        if get_origin(base) in (Union, types.UnionType):  # an object or null: the object's rows
            base = next((m for m in get_args(base) if is_typeddict(m)), base)
        if is_typeddict(base):
            named += [_row_of(f"{name}.{child}", sub) for child, sub in _fields(base).items()]
    lines = [TABLE_HEADER]
    group: list[str] = []
    for i, (name, row) in enumerate(named):
        group.append(f"`{name}`")
        if i + 1 < len(named) and named[i + 1][1] == row:
            continue
        lines.append(f"| {', '.join(group)} | {row.type} | {row.null} | {row.meaning} |")
        group = []
    return "\n".join(lines)


def _kind_pattern(model: Any) -> dict[str, Any]:
    """The schema of a kind given by a pattern (``custom.<rule id>``)."""
    _, metadata = _unwrap(_fields(model)["kind"])
    keywords = next(m for m in metadata if isinstance(m, Schema)).keywords
    return {"pattern": keywords["pattern"]}


def _column(model: Any) -> str:
    kinds = get_args(_unwrap(_fields(model)["kind"])[0])
    if not kinds:
        return "`custom.<id>`"
    return f"`{kinds[0]}`" if len(kinds) == 1 else "thresholds"


def _presence(model: Any, name: str) -> str:
    fields = _fields(model)
    if name not in fields:
        return "-"
    found = next((m for m in _unwrap(fields[name])[1] if isinstance(m, Presence)), None)
    if found is not None:
        return found.text
    if name not in model.__required_keys__:
        raise ValueError(f"{model.__name__}.{name} is optional: say when with a Presence")
    return "yes"


def presence_table() -> str:
    """The guide's table of which kinds carry which field: first the fields every kind has,
    then the others in :class:`MomentEvent`'s order, neighbours with the same cells in one row."""
    names = list(_fields(MomentEvent))
    cells = {name: tuple(_presence(model, name) for model in KIND_MODELS) for name in names}
    everywhere = tuple("yes" for _ in KIND_MODELS)
    groups: list[tuple[list[str], tuple[str, ...]]] = [
        ([name for name in names if cells[name] == everywhere], everywhere)
    ]
    for name in names:
        if cells[name] == everywhere:
            continue
        if len(groups) > 1 and groups[-1][1] == cells[name]:
            groups[-1][0].append(name)
        else:
            groups.append(([name], cells[name]))
    columns = [_column(model) for model in KIND_MODELS]
    lines = [
        f"{PRESENCE_HEADER} {' | '.join(columns)} |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for group, row in groups:
        fields = ", ".join(f"`{name}`" for name in group)
        lines.append(f"| {fields} | {' | '.join(row)} |")
    return "\n".join(lines)
