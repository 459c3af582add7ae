"""Operations as code: alert rules, their promtool unit tests, runbooks and the dashboard.

STYLE.md "Operations as code" and contract section 5. promtool is required, not
optional: ``scripts/ensure-promtool`` (run by ``make install``) prints or installs
it. Metric names are checked against the registry ``app.metrics.build_metrics``
builds, so a renamed metric breaks these tests instead of silently emptying a panel
or an alert.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.metrics import EVENT_KINDS, OUTCOMES, PLAN_OUTCOMES, build_metrics
from commands.deliver.metrics import OUTCOMES as DELIVERY_OUTCOMES
from commands.deliver.metrics import build_deliver_metrics
from tests.promql import STRING as _STRING
from tests.promql import metric_names

try:
    import yaml
except ImportError:  # pragma: no cover - a broken dev install
    pytest.fail(
        "PyYAML is missing: it belongs in the [dev] extras (pyproject.toml); run make install",
        pytrace=False,
    )

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "config" / "prometheus" / "tests" / "alerts_test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "moments.json"
RUNBOOK = ROOT / "docs" / "operations.md"
ENSURE_PROMTOOL = ROOT / "scripts" / "ensure-promtool"
APT_PROMTOOL = Path("/usr/bin/promtool")

JOB = "usage-moments"
SEVERITIES = {"page", "ticket"}
#: Alerts the operations brief asks for; deleting one must be deliberate.
REQUIRED_ALERTS = {
    "MomentsWorkerDown",
    "MomentsWorkerNotReady",
    "MomentsConsumerLagHigh",
    "MomentsInvalidRecordRatioHigh",
    "MomentsStalled",
    "MomentsEventLatencyHigh",
    "MomentsFrequentRebalances",
    "MomentsLateRecordRatioHigh",
    "MomentsPlanRecordsInvalid",
    "MomentsNoEvents",
}
#: Values of the labels whose value sets app.metrics fixes.
LABEL_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("moments_records_total", "outcome"): OUTCOMES,
    ("moments_plan_records_total", "outcome"): PLAN_OUTCOMES,
    ("moments_events_total", "kind"): EVENT_KINDS,
    ("moments_deliveries_total", "outcome"): DELIVERY_OUTCOMES,
}
#: Grafana's variables, replaced by something PromQL accepts before promtool parses a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".+",
}


# --- helpers -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Exported:
    """A series name the worker exports and the labels it carries."""

    name: str
    labels: frozenset[str]


@cache
def exported_series() -> dict[str, Exported]:
    """Series names of every metric ``build_metrics`` (and ``build_deliver_metrics``)
    registers, with their label names.

    Counters are exported as ``NAME_total``, histograms as ``NAME_bucket``/``_sum``/
    ``_count`` (``le`` on buckets); ``*_created`` series are disabled in app.metrics.
    """
    out: dict[str, Exported] = {}
    # The worker's metrics and the deliverer's (`moments deliver`, scraped under one job).
    built = (build_metrics(CollectorRegistry()), build_deliver_metrics(CollectorRegistry(), (), ()))
    for metrics, field in [(m, f) for m in built for f in dataclasses.fields(m)]:
        collector = getattr(metrics, field.name)
        if isinstance(collector, CollectorRegistry):
            continue
        (family,) = collector.describe()
        # prometheus_client keeps the declared label names only in this attribute.
        labels = frozenset(collector._labelnames)
        if family.type == "counter":
            names = {f"{family.name}_total": labels}
        elif family.type == "histogram":
            names = {
                f"{family.name}_bucket": labels | {"le"},
                f"{family.name}_sum": labels,
                f"{family.name}_count": labels,
            }
        else:
            names = {family.name: labels}
        out.update({name: Exported(name, frozenset(lbls)) for name, lbls in names.items()})
    return out


def known_series() -> dict[str, Exported]:
    """Exported series plus Prometheus' own ``up``."""
    return {**exported_series(), "up": Exported("up", frozenset())}


_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """``(metric, {label: (operator, value)})`` of every braced selector in ``expr``."""
    return [
        (name, {label: (op, value) for label, op, value in _MATCHER.findall(body)})
        for name, body in _SELECTOR.findall(expr)
    ]


def selector_problems(expr: str) -> list[str]:
    """Why ``expr`` breaks the naming and ``job="usage-moments"`` conventions, if it does."""
    known = known_series()
    problems = [
        f"{name} is not exported by app.metrics" for name in metric_names(expr) - known.keys()
    ]
    bare = _STRING.sub('""', expr)
    for name in metric_names(expr) & known.keys():
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])", bare):
            if not bare[match.end() :].lstrip().startswith("{"):
                problems.append(f'{name} without a {{job="{JOB}"}} selector')
    for name, matchers in selectors(expr):
        if name not in known:
            continue
        if matchers.get("job") != ("=", JOB):
            problems.append(f'{name} must select job="{JOB}", has {matchers.get("job")}')
        allowed = known[name].labels | {"job", "instance"}
        for label, (op, value) in matchers.items():
            if label not in allowed:
                problems.append(f"{name} has no label {label!r} (has {sorted(allowed)})")
            values = LABEL_VALUES.get((name, label))
            if values is not None and op == "=" and value not in values:
                problems.append(f"{name}{{{label}={value!r}}}: not one of {values}")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    """Anchors of the headings of a Markdown document (fenced code skipped)."""
    anchors: set[str] = set()
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if heading and not fenced:
            anchors.add(slug(heading.group(1)))
    return anchors


def find_promtool() -> str | None:
    on_path = shutil.which("promtool")
    if on_path:
        return on_path
    if APT_PROMTOOL.is_file() and os.access(APT_PROMTOOL, os.X_OK):
        return str(APT_PROMTOOL)
    return None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


RULES: list[dict[str, Any]] = [
    rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]
]
ALERT_RULES = {rule["alert"]: rule for rule in RULES if "alert" in rule}
RECORDED = {rule["record"] for rule in RULES if "record" in rule}
DASH: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
PANELS: list[dict[str, Any]] = DASH.get("panels", [])


@pytest.fixture(scope="module")
def promtool() -> str:
    path = find_promtool()
    if path is None:
        pytest.fail(
            "promtool not found (neither on PATH nor /usr/bin/promtool). "
            "Run scripts/ensure-promtool (or make install), which installs it with "
            "apt-get as root, or install Prometheus' promtool yourself.",
            pytrace=False,
        )
    return path


# --- promtool ------------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ALERT_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana variables filled in)."""
    rules = []
    for panel in PANELS:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown Grafana variable in {target['expr']!r}"
            rules.append(
                {"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr}
            )
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ensure_promtool_prints_a_working_promtool(promtool: str) -> None:
    env = {**os.environ, "PATH": f"{Path(promtool).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(ENSURE_PROMTOOL)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.splitlines() == [printed] and os.access(printed, os.X_OK), result.stdout
    assert run(printed, "--version").returncode == 0


def test_ensure_prometheus_prints_a_working_server() -> None:
    """The server tests/integration/test_prometheus.py runs (same Debian package)."""
    script = ROOT / "scripts" / "ensure-prometheus"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.splitlines() == [printed] and os.access(printed, os.X_OK), result.stdout
    version = run(printed, "--version")
    assert version.returncode == 0 and "prometheus, version" in version.stdout, version


# --- alert rules ---------------------------------------------------------------


def test_required_alerts_exist() -> None:
    assert REQUIRED_ALERTS <= ALERT_RULES.keys(), REQUIRED_ALERTS - ALERT_RULES.keys()


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alert_is_complete(name: str) -> None:
    rule = ALERT_RULES[name]
    assert re.fullmatch(r"([0-9]+[smhdwy])+", str(rule.get("for", ""))), f"{name}: for:"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotations.{key}"
    assert "{{" in annotations["description"], f"{name}: description should show values"
    assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alert_runbook_section_exists(name: str) -> None:
    anchor = ALERT_RULES[name]["annotations"]["runbook_url"].partition("#")[2]
    assert anchor in markdown_anchors(RUNBOOK.read_text(encoding="utf-8")), (
        f"docs/operations.md has no heading for #{anchor} (add '### {name}' under Runbooks)"
    )


def test_runbook_links_resolve() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = markdown_anchors(text)
    broken = {link for link in re.findall(r"\]\(#([^)]+)\)", text) if link not in anchors}
    assert not broken


#: What every runbook section walks an SRE through, in this order: from "alert fired"
#: to "what to do" (issue #10, Done-when).
RUNBOOK_PARTS = ("**Means:**", "**Confirm:**", "**Check first:**", "**Fix:**", "**Escalate:**")


def runbook_section(name: str) -> str:
    """The text under ``### name`` in docs/operations.md, up to the next heading."""
    text = RUNBOOK.read_text(encoding="utf-8")
    match = re.search(rf"(?ms)^### {re.escape(name)}\s*$(.*?)(?=^#{{1,3}} |\Z)", text)
    assert match, f"docs/operations.md has no '### {name}'"
    return match.group(1)


def runbook_part(name: str, part: str) -> str:
    """One ``**Part:**`` paragraph (up to the blank line) of ``name``'s runbook."""
    section = runbook_section(name)
    start = section.index(part)
    end = section.find("\n\n", start)
    return section[start : end if end >= 0 else None]


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_runbook_walks_from_alert_to_action(name: str) -> None:
    section = runbook_section(name)
    found = [part for part in RUNBOOK_PARTS if part in section]
    assert found == list(RUNBOOK_PARTS), f"{name}: has {found}, needs {RUNBOOK_PARTS}"
    assert [section.index(p) for p in found] == sorted(section.index(p) for p in found), name


def confirm_queries(name: str) -> list[str]:
    """PromQL code spans of ``name``'s Confirm paragraph (those that select the job)."""
    spans = re.findall(r"`([^`]+)`", runbook_part(name, "**Confirm:**"))
    return [span for span in spans if f'job="{JOB}"' in span]


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_runbook_confirms_with_a_query_on_the_alerts_metrics(name: str) -> None:
    queries = confirm_queries(name)
    assert queries, f"{name}: the Confirm paragraph gives no query"
    read = set().union(*(metric_names(q) for q in queries))
    assert read & metric_names(ALERT_RULES[name]["expr"]), (name, read)
    for query in queries:
        assert not selector_problems(query), (name, query, selector_problems(query))


def test_runbook_queries_parse(promtool: str, tmp_path: Path) -> None:
    """promtool parses every query the runbooks tell an SRE to run."""
    rules = [
        {"record": f"runbook:{name}:{i}", "expr": query}
        for name in sorted(ALERT_RULES)
        for i, query in enumerate(confirm_queries(name))
    ]
    path = tmp_path / "runbook_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbook", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(ALERT_RULES))
def test_alert_uses_exported_metrics_and_job(name: str) -> None:
    expr = ALERT_RULES[name]["expr"]
    assert metric_names(expr), f"{name}: reads no metric?"
    problems = [p for p in selector_problems(expr) if p.split()[0] not in RECORDED]
    assert not problems, f"{name}: {problems}"


def test_every_alert_has_firing_and_silent_unit_tests() -> None:
    cases = [case for group in load_yaml(ALERT_TESTS)["tests"] for case in group["alert_rule_test"]]
    tested = {case["alertname"] for case in cases}
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert tested <= ALERT_RULES.keys(), f"tests of unknown alerts: {tested - ALERT_RULES.keys()}"
    assert not ALERT_RULES.keys() - fires, "no case where these fire"
    assert not ALERT_RULES.keys() - silent, "no case where these stay silent"


# --- the PromQL helpers themselves -----------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="usage-moments"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (job, le) "
            '(rate(moments_event_latency_seconds_bucket{job="x"}[10m]))) > 30',
            {"moments_event_latency_seconds_bucket"},
        ),
        (
            "sum(rate(a_total[5m])) by (job) / ignoring(instance) b offset 5m and on(job) c",
            {"a_total", "b", "c"},
        ),
        ("deriv((sum by (t) (x))[10m:1m]) > 0", {"x"}),
    ],
)
def test_metric_names_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_selector_problems_catch_mistakes() -> None:
    assert selector_problems('moments_records_total{job="usage-moments",outcome="late"}') == []
    assert selector_problems('moments_record_total{job="usage-moments"}')
    assert selector_problems("moments_ready == 0")
    assert selector_problems('moments_ready{job="other"}')
    assert selector_problems('moments_records_total{job="usage-moments",outcome="lost"}')
    assert selector_problems('moments_consumer_lag{job="usage-moments",partiton="1"}')


# --- Grafana dashboard -----------------------------------------------------------


def test_dashboard_top_level() -> None:
    assert isinstance(DASH.get("title"), str) and DASH["title"].strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(DASH.get("uid", "")))
    assert isinstance(DASH.get("schemaVersion"), int) and DASH["schemaVersion"] >= 36
    assert isinstance(PANELS, list) and PANELS


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in DASH.get("templating", {}).get("list", [])}
    datasource = variables.get("datasource")
    assert datasource is not None, "needs a 'datasource' template variable"
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    instance = variables.get("instance")
    assert instance is not None and instance["type"] == "query"
    assert instance["datasource"]["uid"] == "${datasource}"


def test_dashboard_panels_are_importable() -> None:
    ids = [panel.get("id") for panel in PANELS]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids), ids
    for panel in PANELS:
        title = panel.get("title")
        assert isinstance(title, str) and title.strip(), panel
        assert isinstance(panel.get("type"), str) and panel["type"], title
        grid = panel.get("gridPos", {})
        assert all(isinstance(grid.get(k), int) for k in "xywh"), title
        assert grid["x"] + grid["w"] <= 24, title
        assert panel.get("datasource", {}).get("uid") == "${datasource}", title
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        ref_ids = [t.get("refId") for t in targets]
        assert len(set(ref_ids)) == len(ref_ids), title
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), title
            assert target.get("datasource", {}).get("uid") == "${datasource}", title


def test_dashboard_uses_exported_metrics_and_job() -> None:
    problems = {
        f"{panel['title']}/{target['refId']}": found
        for panel in PANELS
        for target in panel["targets"]
        if (found := selector_problems(target["expr"]))
    }
    assert not problems
    for panel in PANELS:
        for target in panel["targets"]:
            for _, matchers in selectors(target["expr"]):
                assert matchers.get("instance") == ("=~", "$instance"), panel["title"]


def test_dashboard_shows_every_metric() -> None:
    shown = {name for p in PANELS for t in p["targets"] for name in metric_names(t["expr"])}
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported_series()}
    missing = {f for f in families if not any(s.startswith(f) for s in shown)}
    assert not missing
