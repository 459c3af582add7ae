"""Just enough PromQL reading for the tests: which metric names an expression uses.

Shared by the unit checks of the shipped alerts and dashboard
(tests/ops/test_ops_config.py) and the integration test that runs them against a
real Prometheus (tests/integration/test_prometheus.py). A regex reading, not a
parser: promtool and Prometheus parse; this only lists the names to cross-check.
"""

from __future__ import annotations

import re

#: A double-quoted PromQL string (label values), escapes included.
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "by", "without", "on"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (function and aggregation names excluded)."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # an operator, or a function / aggregation being called
        names.add(name)
    return names
