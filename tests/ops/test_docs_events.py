"""docs/events.md cannot drift from the schema and the builders.

Every ```json block of the guide is a complete event that the schema accepts and that
``scripts/gen-event-examples.py`` prints (from the real domain code, catalog and templates),
under the heading the script gives it; every kind has one; the worked event-id examples are
what the domain computes; the id recipes as the guide words them recompute every example's
id; the field table names every field the schema defines, and no other; and the guide's lists
of kinds, topics and templates name every kind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from domain.common.timeutil import parse_rfc3339_ms
from domain.wording.events import (
    anniversary_event_id,
    change_event_id,
    drop_event_id,
    event_id,
    milestone_event_id,
    recovered_event_id,
)
from domain.wording.kinds import KINDS
from domain.wording.templates import load_templates
from tests.schema import SCHEMA, assert_valid

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "events.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
REGENERATE = "regenerate with .venv/bin/python scripts/gen-event-examples.py and paste"


def blocks(language: str) -> list[str]:
    """The bodies of the fenced ``language`` blocks of the guide, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC, flags=re.DOTALL | re.MULTILINE)


def load_generator() -> ModuleType:
    path = ROOT / "scripts" / "gen-event-examples.py"
    spec = importlib.util.spec_from_file_location("gen_event_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JSON_BLOCKS = blocks("json")
EXAMPLES = [json.loads(block) for block in JSON_BLOCKS]


# --- Example payloads ----------------------------------------------------------------------


def test_the_guide_has_an_example_of_every_kind_in_topic_order() -> None:
    kinds = [event["kind"] for event in EXAMPLES]
    builtin = [kind for kind in kinds if not kind.startswith("custom.")]
    assert set(builtin) == set(KINDS)
    assert builtin == sorted(builtin, key=KINDS.index)
    # A moment you define (contract 3.8) comes last: its kind is its rule's.
    assert kinds[len(builtin) :] == ["custom.busy-week"]


def test_the_examples_show_the_variants_notifiers_must_handle() -> None:
    """An overage hit with its cost, a recovery naming its drop, a plan change with its
    period and an offer."""
    [over] = [e for e in EXAMPLES if e["kind"] == "threshold-hit" and e["level"] > 1]
    assert set(over["overage"]) == {"units", "unit_price", "cost", "projected_cost"}
    [drop] = [e for e in EXAMPLES if e["kind"] == "sudden-drop"]
    [recovered] = [e for e in EXAMPLES if e["kind"] == "usage-recovered"]
    assert recovered["drop"]["drop_event_id"] == drop["event_id"]
    changes = {e["change"]["type"]: e for e in EXAMPLES if e["kind"] == "account-change"}
    assert "period" in changes["plan_upgraded"]
    assert "period" not in changes["members_added"]
    assert changes["members_added"]["suggestion"]["action"] == "offer"
    [anniversary] = [e for e in EXAMPLES if e["kind"] == "billing-anniversary"]
    assert not {"metric", "usage", "projection"} & set(anniversary)


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=lambda b: json.loads(b)["kind"])
def test_every_json_block_is_a_valid_event(block: str) -> None:
    assert_valid(json.loads(block))


def test_examples_are_what_the_builders_make() -> None:
    generator = load_generator()
    generated = generator.examples()
    assert len(generated) == len(JSON_BLOCKS), REGENERATE
    for block, (title, event) in zip(JSON_BLOCKS, generated.items(), strict=True):
        # Text, not just values: 1.0 and 1 are equal in Python but not in the id recipe.
        assert block.rstrip("\n") == generator.render(event), f"{title}: {REGENERATE}"
        headings = re.findall(r"^### (.+)$", DOC.split(block, 1)[0], flags=re.MULTILINE)
        assert headings[-1] == title, f"the example under {headings[-1]!r} is {title!r}"


def test_example_numbers_are_json_numbers() -> None:
    hit = EXAMPLES[1]
    assert '"level": 1.0' in JSON_BLOCKS[1]
    assert isinstance(hit["usage"]["total"], int) and isinstance(hit["plan"]["price"], int)


# --- The event id --------------------------------------------------------------------------

WORKED = re.compile(
    r'^text = "(?P<text>[^"]+)"\nprint\(hashlib\.sha256\(text\.encode\("utf-8"\)\)\.hexdigest\(\)\)'
    r"\n# (?P<digest>[0-9a-f]{64})$",
    flags=re.MULTILINE,
)


def worked_examples() -> list[tuple[str, str]]:
    found = [
        (match["text"], match["digest"])
        for block in blocks("python")
        for match in WORKED.finditer(block)
    ]
    assert len(found) >= 6, "the worked event-id examples are missing from docs/events.md"
    return found


def domain_id(text: str) -> str:
    """The id :mod:`domain.wording.events` gives the moment whose identity text is ``text``."""
    kind, rest = text.split("|", 1)
    if kind == "sudden-drop":
        account, metric, day = rest.rsplit("|", 2)
        return drop_event_id(account, metric, date.fromisoformat(day))
    if kind == "usage-recovered":
        account, metric, day = rest.rsplit("|", 2)
        return recovered_event_id(account, metric, date.fromisoformat(day))
    if kind == "milestone":
        account, metric, value = rest.rsplit("|", 2)
        return milestone_event_id(account, metric, Decimal(value))
    if kind == "billing-anniversary":
        account, start = rest.rsplit("|", 1)
        return anniversary_event_id(account, parse_rfc3339_ms(start))
    if kind == "account-change":
        account, change, updated = rest.rsplit("|", 2)
        return change_event_id(account, change, parse_rfc3339_ms(updated))
    account, metric, start, plan_id, level = rest.rsplit("|", 4)
    return event_id(kind, account, metric, parse_rfc3339_ms(start), plan_id, Decimal(level))


def test_worked_event_id_examples_match_the_domain() -> None:
    ids = {event["event_id"] for event in EXAMPLES}
    kinds = set()
    for text, digest in worked_examples():
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == digest
        assert domain_id(text) == digest
        assert digest in ids, f"the worked example {text!r} is not one of the example events"
        kinds.add(text.split("|", 1)[0])
    assert {
        "threshold-near",
        "sudden-drop",
        "usage-recovered",
        "milestone",
        "billing-anniversary",
        "account-change",
    } <= kinds


def test_the_id_recipe_recomputes_every_example() -> None:
    """The recipe as the guide words it, applied to the example payloads."""
    for event in EXAMPLES:
        kind = event["kind"]
        if kind == "sudden-drop":
            triggered = date.fromisoformat(event["triggered_at"][:10])
            first_recent_day = date.fromordinal(
                triggered.toordinal() - event["drop"]["recent_days"]
            )
            parts = [kind, event["account_id"], event["metric"], str(first_recent_day)]
        elif kind == "usage-recovered":
            parts = [kind, event["account_id"], event["metric"], event["drop"]["dropped_on"]]
        elif kind == "milestone":
            # A plain integer when whole: JSON writes the value so already.
            parts = [
                kind,
                event["account_id"],
                event["metric"],
                json.dumps(event["milestone"]["value"]),
            ]
        elif kind == "billing-anniversary":
            parts = [kind, event["account_id"], event["period"]["start"]]
        elif kind == "account-change":
            parts = [kind, event["account_id"], event["change"]["type"], event["triggered_at"]]
        elif kind == "birthday":
            parts = [kind, event["account_id"], event["birthday"]["day"]]
        elif kind.startswith("custom."):
            # The window's first day: window - 1 days before triggered_at's UTC day.
            days = int(event["custom"]["window"].removesuffix("d"))
            triggered = date.fromisoformat(event["triggered_at"][:10])
            first_day = date.fromordinal(triggered.toordinal() - days + 1)
            custom = event["custom"]
            parts = ["custom", custom["rule"], event["account_id"], event["metric"], str(first_day)]
        else:
            parts = [
                event["kind"],
                event["account_id"],
                event["metric"],
                event["period"]["start"],
                event["plan"]["id"],
                json.dumps(event["level"]),
            ]
        digest = hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()
        assert digest == event["event_id"]


# --- The field table -----------------------------------------------------------------------


def table_fields() -> set[str]:
    """Every field named in the first column of the table under "## Fields"."""
    section = DOC.split("\n## Fields\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no field table under ## Fields"
    names: set[str] = set()
    for row in rows:
        first_cell = re.split(r"(?<!\\)\|", row)[1]
        names.update(re.findall(r"`([^`]+)`", first_cell))
    return names


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return node


def schema_fields() -> set[str]:
    """Top-level properties, and ``parent.child`` for the properties of object fields."""
    names = set()
    for name, node in SCHEMA["properties"].items():
        names.add(name)
        for child in resolve(node).get("properties", {}):
            names.add(f"{name}.{child}")
    return names


def test_the_field_table_names_every_top_level_field() -> None:
    missing = set(SCHEMA["properties"]) - table_fields()
    assert not missing, f"fields of the schema missing from the table of docs/events.md: {missing}"


def test_the_field_table_matches_the_schema_exactly() -> None:
    assert table_fields() == schema_fields()


# --- Every kind, everywhere -----------------------------------------------------------------


def section(title: str) -> str:
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_described_subscribed_and_acted_on(kind: str) -> None:
    assert f"### `{kind}`" in section("The kinds")
    assert f"| `moments.{kind}` |" in section("Topics, keys and partitions")
    acting = section("Subscribing, deduplicating and acting per kind")
    assert f"`{kind}`" in acting.split("**Act**", 1)[1]
    assert f"`{kind}`" in section("Messages and their templates")
    assert f'"{kind}",' in section("A minimal consumer")


def test_every_shipped_template_table_is_named_in_the_guide() -> None:
    rows = [line for line in section("Messages and their templates").splitlines() if "`[" in line]
    shipped = load_templates(ROOT / "config" / "messages.toml")
    for kind, action in shipped.messages:
        row = next((r for r in rows if f"`[{kind}." in r), "")
        assert f"`[{kind}.{action}]`" in row or f"`.{action}`" in row or f"`[{kind}.*]`" in row, (
            f"[{kind}.{action}] is not named in ## Messages and their templates"
        )
    assert any("`[overage]`" in r for r in rows) and any("`[pace]`" in r for r in rows)


# --- Code samples --------------------------------------------------------------------------


@pytest.mark.parametrize("source", blocks("python"), ids=lambda s: s.splitlines()[0][:40])
def test_python_samples_compile(source: str) -> None:
    compile(source, str(DOC_PATH), "exec")


def sums_only(tmp_path: Path) -> Path:
    """The shipped catalog as it was before aggregations (issue 18): every metric a sum."""
    text = (ROOT / "config" / "plans.toml").read_text(encoding="utf-8")
    text = re.sub(r'^(\w+) = \{ unit = ("[^"]+").*$', r"\1 = \2", text, flags=re.MULTILINE)
    text = re.sub(r"^active_users = .*\n", "", text, flags=re.MULTILINE)
    text = re.sub(r", active_users = \d+", "", text)
    # The tokens metric came with the meters (issue 18): without them, as before.
    text = re.sub(r"^tokens = .*\n", "", text, flags=re.MULTILINE)
    text = re.sub(r", tokens = [\d_]+", "", text)
    text = text[: text.index("\n# Meters")] + "\n"
    assert "aggregation" not in re.sub(r"#.*", "", text)
    path = tmp_path / "plans.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_catalog_of_sums_only_gives_the_examples_as_before(tmp_path: Path) -> None:
    """Sum metrics read exactly as before meters existed: with every metric a sum, every
    example but those speaking of seats, storage or active users is the guide's, byte for
    byte, and the anniversary's recap reads as it did ("you used ...")."""
    generator = load_generator()
    shipped = generator.examples()
    before = generator.examples(sums_only(tmp_path))
    assert list(before) == list(shipped)
    changed = {"threshold-hit of a level (seats)", "billing-anniversary"}
    for title in shipped.keys() - changed:
        assert generator.render(before[title]) == generator.render(shipped[title]), title
    assert before["billing-anniversary"]["message"]["body"] == (
        "Today marks 1 year with us (12 months); thank you for growing with us. From November 1, "
        "2026 to December 1, 2026 you used 15,000 of 10,000 API calls (150%), 0 of 100,000 events "
        "(0%), 2 of 3 seats (66%) and 3.5 of 10 GB of storage (35%). You reached your limit of API "
        "calls this month and the one before; Growth has room for all of it. Moving to Growth "
        "costs $79 a month ($60 more)."
    )
    assert before["threshold-hit of a level (seats)"]["projection"] is not None
    assert shipped["threshold-hit of a level (seats)"]["projection"] is None
