"""deploy/compose.yaml: valid Compose, consistent with the worker, Prometheus and Grafana.

There is no Docker engine (nor compose plugin) in CI, so the file is validated against
the Compose Specification's JSON schema and loaded by compose-go, the loader
``docker compose config`` runs (scripts/compose-check, built by
scripts/ensure-deploy-tools), and cross-checked by tests/ops/deploy_checks.py:
every MOMENTS_* variable is a setting and its value passes config/settings.py, each
worker has its own state volume at the image's data dir and its own instance id, peers
reach each other by service name, the grace period outlasts the shutdown timeout,
mounted files exist, Prometheus scrapes exactly the workers under the alerts' job and
loads the shipped rules (promtool check config), Grafana reads the shipped dashboard
from the provisioned Prometheus. Broken copies prove each check can fail.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.ops.deploy_checks import ROOT, check_compose, compose_workers, interpolate

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARDS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "moments.yml"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
ENSURE_PROMTOOL = ROOT / "scripts" / "ensure-promtool"
#: What an operator exports before `docker compose up` (values made up here).
ENV = {"MOMENTS_WEB_TOKEN": "t0ken-for-the-tests", "GRAFANA_ADMIN_PASSWORD": "pw-for-tests"}


def raw() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def check(
    doc: dict[str, Any], env: dict[str, str] | None = None, prometheus: dict[str, Any] | None = None
) -> list[str]:
    return check_compose(
        doc,
        ENV if env is None else env,
        DEPLOY,
        prometheus if prometheus is not None else yaml.safe_load(PROMETHEUS.read_text()),
        yaml.safe_load(DATASOURCES.read_text()),
        yaml.safe_load(DASHBOARDS.read_text()),
    )


def schema_errors(tools: Path, doc: dict[str, Any]) -> list[str]:
    schema = json.loads((tools / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_compose_file_matches_the_compose_specification(deploy_tools: Path) -> None:
    assert schema_errors(deploy_tools, interpolate(raw(), ENV)) == []


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: d["services"]["worker-1"].update(enviroment={}), "enviroment"),
        (lambda d: d["services"]["kafka"].update(ports="9094"), "ports"),
        (
            lambda d: d["services"]["grafana"].update(
                depends_on={"prometheus": {"condition": "up"}}
            ),
            "up",
        ),
    ],
    ids=["misspelled key", "ports not a list", "unknown depends_on condition"],
)
def test_schema_rejects_a_broken_copy(deploy_tools: Path, mutate: Any, named: str) -> None:
    doc = copy.deepcopy(interpolate(raw(), ENV))
    mutate(doc)
    errors = schema_errors(deploy_tools, doc)
    assert any(named in e for e in errors), errors


def test_compose_agrees_with_the_worker_prometheus_and_grafana() -> None:
    assert check(raw()) == []
    assert len(compose_workers(raw())) == 2


def test_compose_refuses_to_start_without_the_web_token() -> None:
    problems = check(raw(), env={"GRAFANA_ADMIN_PASSWORD": "x"})
    assert problems and "MOMENTS_WEB_TOKEN" in problems[0]


def _worker_env(d: dict[str, Any], name: str) -> dict[str, Any]:
    env: dict[str, Any] = d["services"][name]["environment"]
    return env


MUTATIONS = {
    "unknown variable": (
        lambda d: _worker_env(d, "worker-1").update(MOMENTS_STANDBY_REPLICA="1"),
        "MOMENTS_STANDBY_REPLICA is not a setting",
    ),
    "value the worker rejects": (
        lambda d: _worker_env(d, "worker-2").update(MOMENTS_PARTITIONS="0"),
        "MOMENTS_PARTITIONS",
    ),
    "shared state volume": (
        lambda d: d["services"]["worker-2"].update(volumes=["worker-1-state:/var/lib/moments"]),
        "shared with worker-1",
    ),
    "state outside the volume": (
        lambda d: _worker_env(d, "worker-1").update(MOMENTS_DATA_DIR="/tmp/state"),
        "no volume at the state directory /tmp/state",
    ),
    "same instance id": (
        lambda d: _worker_env(d, "worker-2").update(MOMENTS_INSTANCE_ID="worker-1"),
        "also used by worker-1",
    ),
    "advertised host not the service": (
        lambda d: _worker_env(d, "worker-2").update(MOMENTS_WEB_ADVERTISED_HOST="localhost"),
        "MOMENTS_WEB_ADVERTISED_HOST is 'localhost'",
    ),
    "grace below shutdown timeout": (
        lambda d: d["services"]["worker-1"].update(stop_grace_period="30s"),
        "stop_grace_period 30s",
    ),
    "token written in the file": (
        lambda d: _worker_env(d, "worker-1").update(MOMENTS_WEB_TOKEN="s3cret"),  # noqa: S106 - a made-up value
        "MOMENTS_WEB_TOKEN is written in the file",
    ),
    "broker not advertised": (
        lambda d: _worker_env(d, "worker-1").update(MOMENTS_KAFKA_BOOTSTRAP="broker:9092"),
        "broker:9092 is not a listener",
    ),
    "unpinned image": (
        lambda d: d["services"]["prometheus"].update(image="prom/prometheus:latest"),
        "not pinned",
    ),
    "missing mounted file": (
        lambda d: d["services"]["grafana"]["volumes"].append("./nowhere.yml:/etc/x.yml:ro"),
        "nowhere.yml does not exist",
    ),
    "port published twice": (
        lambda d: d["services"]["worker-2"].update(ports=["127.0.0.1:6066:6066"]),
        "also published by worker-1",
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_cross_check_catches(case: str) -> None:
    doc = copy.deepcopy(raw())
    mutate, named = MUTATIONS[case]
    mutate(doc)
    problems = check(doc)
    assert any(named in p for p in problems), problems


def test_cross_check_catches_a_scrape_config_missing_a_worker() -> None:
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    prometheus["scrape_configs"][0]["static_configs"][0]["targets"] = ["worker-1:6066"]
    problems = check(raw(), prometheus=prometheus)
    assert any("the workers are ['worker-1:6066', 'worker-2:6066']" in p for p in problems)


def test_cross_check_catches_another_job_name() -> None:
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    prometheus["scrape_configs"][0]["job_name"] = "moments"
    assert any("no job 'usage-moments'" in p for p in check(raw(), prometheus=prometheus))


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # The rule file is mounted at a container path: point a copy at the repository's file.
    promtool = subprocess.run(
        [str(ENSURE_PROMTOOL)], capture_output=True, text=True, check=True
    ).stdout.strip()
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["rule_files"] = [str(ALERTS)]
    copy_path = tmp_path / "prometheus.yml"
    copy_path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [promtool, "check", "config", str(copy_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def compose_check(
    tools: Path, compose: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """compose-go's loader (what `docker compose config` runs) over ``compose``."""
    return subprocess.run(
        [str(tools / "bin" / "compose-check"), str(compose)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
        check=False,
    )


def test_compose_loader_accepts_the_file(deploy_tools: Path) -> None:
    proc = compose_check(deploy_tools, COMPOSE, ENV)
    assert proc.returncode == 0, proc.stderr
    model = yaml.safe_load(proc.stdout)
    assert model["name"] == "usage-moments"
    assert set(model["services"]) == {"kafka", "worker-1", "worker-2", "prometheus", "grafana"}
    # Interpolated from the environment, not written in the file.
    assert (
        model["services"]["worker-1"]["environment"]["MOMENTS_WEB_TOKEN"]
        == ENV["MOMENTS_WEB_TOKEN"]
    )


def test_compose_loader_refuses_a_missing_token(deploy_tools: Path) -> None:
    proc = compose_check(deploy_tools, COMPOSE, {"GRAFANA_ADMIN_PASSWORD": "x"})
    assert proc.returncode != 0
    assert "required variable MOMENTS_WEB_TOKEN is missing" in proc.stderr


def test_compose_loader_rejects_an_undeclared_volume(deploy_tools: Path, tmp_path: Path) -> None:
    # A copy beside the original, so its relative paths resolve the same way.
    broken = DEPLOY / f".broken-{tmp_path.name}.yaml"
    broken.write_text(
        COMPOSE.read_text().replace(
            "- worker-2-state:/var/lib/moments", "- worker-3-state:/var/lib/moments"
        )
    )
    try:
        proc = compose_check(deploy_tools, broken, ENV)
    finally:
        broken.unlink()
    assert proc.returncode != 0
    assert "undefined volume worker-3-state" in proc.stderr
