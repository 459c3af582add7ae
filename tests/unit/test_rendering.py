"""The one-line facts of an event (``moments tail``), read through the kind models.

The lines of the guide's examples are spelled out; any other value, complete, partial or
garbage, renders as one printable line of bounded length. (Before ``tail`` switched to this
module, hypothesis compared the two on such values and found no difference.)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.wording.kinds import KINDS
from domain.wording.rendering import FACTS_MAX_CHARS, RENDERERS, event_facts, format_level
from tests.strategies import json_values

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    ("threshold-near", "80% 8,000 of 10,000 API calls; suggests upgrade to Growth"),
    ("threshold-hit", "100% 10,000 of 10,000 API calls; suggests upgrade to Growth"),
    (
        "threshold-hit past the limit (overage)",
        "150% 15,000 of 10,000 API calls; overage $10 so far, $12.74 projected; suggests upgrade "
        "to Growth",
    ),
    ("threshold-hit of a level (seats)", "100% 3 of 3 seats; suggests upgrade to Growth"),
    ("sudden-drop", "last 3 days: 0 API calls vs 3,600 expected (0%); suggests pause"),
    (
        "usage-recovered",
        "last 3 days: 3,400 API calls vs 3,600 expected (94%); ends the drop of 2026-11-21, "
        "drop_event_id ce033002adf45086e5ded0071b7170b642dcf99d49ce68784fb341dd9a398af0",
    ),
    (
        "milestone",
        "milestone 50 purchases, lifetime total 52; suggests reward: 15% off your next order",
    ),
    (
        "billing-anniversary",
        "2026-11-01..2026-12-01, 12 periods, 1 year: 15,000 of 10,000 API calls (150%), 2 of 3 "
        "seats (66%), 3.5 of 10 GB of storage (35%); suggests upgrade to Growth",
    ),
    ("account-change (plan_upgraded)", "plan_upgraded: starter -> growth"),
    (
        "account-change (members_added)",
        "members_added: 3 -> 5; suggests offer: a family discount: 10% off each member you add",
    ),
    ("birthday", "birthday 2026-12-07; suggests offer: a free month on us"),
    (
        "custom.busy-week",
        "12 purchases over 7d (threshold 10); 17 purchases this period; suggests offer: a free "
        "month of priority shipping labels",
    ),
]


def examples() -> dict[str, dict[str, Any]]:
    path = ROOT / "scripts" / "gen-event-examples.py"
    spec = importlib.util.spec_from_file_location("gen_event_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: dict[str, dict[str, Any]] = module.examples()
    return found


def test_every_kind_has_a_renderer() -> None:
    assert set(RENDERERS) == set(KINDS)


def test_the_examples_render_as_tail_prints_them() -> None:
    events = examples()
    assert [title for title, _ in EXPECTED] == list(events)
    for title, line in EXPECTED:
        event = json.loads(json.dumps(events[title]))  # as read off the topic
        assert event_facts(event["kind"], event) == line, title


def test_levels() -> None:
    assert [format_level(v) for v in (0.8, 1.0, 1.5, 0.755, "x", None, True)] == [
        "80%",
        "100%",
        "150%",
        "75.5%",
        "-",
        "-",
        "-",
    ]


field_names = st.sampled_from(
    [
        "kind",
        "level",
        "crossed_levels",
        "usage",
        "overage",
        "drop",
        "milestone",
        "recap",
        "change",
        "suggestion",
        "plan",
        "period",
        "metric",
    ]
)


@settings(deadline=None)
@given(
    kind=st.sampled_from([*KINDS, "unknown"]),
    event=st.dictionaries(field_names, json_values, max_size=6),
)
def test_any_value_renders_as_one_printable_line(kind: str, event: dict[str, Any]) -> None:
    assert_one_printable_line(event_facts(kind, event))


@pytest.mark.parametrize("title", [title for title, _ in EXPECTED])
@settings(deadline=None, max_examples=50)
@given(data=st.data())
def test_partial_examples_render_as_one_printable_line(title: str, data: st.DataObject) -> None:
    event = json.loads(json.dumps(EXAMPLES[title]))
    for name in data.draw(st.lists(st.sampled_from(sorted(event)), max_size=4)):
        inner = event.get(name)
        if isinstance(inner, dict) and inner and data.draw(st.booleans()):
            del inner[data.draw(st.sampled_from(sorted(inner)))]
        else:
            event[name] = data.draw(json_values)
    kind = data.draw(st.sampled_from([event.get("kind"), *KINDS]))
    kind = kind if isinstance(kind, str) else "threshold-near"
    assert_one_printable_line(event_facts(kind, event))


EXAMPLES = examples()


def assert_one_printable_line(line: str) -> None:
    assert line, "an empty line"
    assert len(line) <= FACTS_MAX_CHARS
    assert line.isprintable(), repr(line)
    assert line == line.strip() and "  " not in line, repr(line)


def _with_control_characters(value: Any) -> Any:
    if isinstance(value, str):
        return f"\x01{value}\n\t\x9b{value}"
    if isinstance(value, dict):
        return {k: _with_control_characters(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_control_characters(v) for v in value]
    return value


@pytest.mark.parametrize("title", [title for title, _ in EXPECTED])
def test_control_characters_in_text_fields_never_reach_the_line(title: str) -> None:
    event = _with_control_characters(EXAMPLES[title])
    kind = EXAMPLES[title]["kind"]
    assert_one_printable_line(event_facts(kind, event))
