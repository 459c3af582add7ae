"""deploy/kubernetes: valid for kubeconform, consistent with the worker and the image.

kubeconform validates every manifest strictly (unknown fields fail) against the
Kubernetes schemas of kubernetes-validate and the ServiceMonitor / PrometheusRule
schemas of prometheus-operator's CRDs (scripts/ensure-deploy-tools); broken copies
prove that it rejects what it should. tests/ops/deploy_checks.py then checks what no
schema knows: settings the worker accepts, stable identity, state volume, grace
period, probes, secrets, selectors and the rules being alerts.yml itself.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import VARIABLES_BY_NAME
from tests.ops.deploy_checks import ROOT, check_deliver, check_kubernetes

K8S = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
GENERATOR = ROOT / "scripts" / "gen-prometheusrule.py"


def manifests() -> list[Path]:
    """The manifests (every YAML file but the kustomization)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load_all() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in manifests()]


def kubeconform(tools: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    """Strict kubeconform over ``files`` with the offline schemas; a missing schema fails."""
    return subprocess.run(
        [
            str(tools / "bin" / "kubeconform"),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-schema-location",
            str(tools / "schemas" / "kubernetes" / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
            "-schema-location",
            str(
                tools
                / "schemas"
                / "crds"
                / "{{ .Group }}"
                / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
            ),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_manifest_is_valid_for_kubeconform(deploy_tools: Path) -> None:
    files = manifests()
    proc = kubeconform(deploy_tools, *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every resource validated, none skipped for want of a schema.
    assert f"{len(files)} resources found in {len(files)} files - Valid: {len(files)}," in (
        proc.stdout
    ), proc.stdout


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = value


BROKEN = [
    # (file, dotted path, value, what kubeconform must name)
    (
        "statefulset.yaml",
        "spec.template.spec.containers.0.ports.0.containerPort",
        "6066",
        "expected integer",
    ),
    ("statefulset.yaml", "spec.template.spec.terminationGracePeriod", 45, "terminationGracePeriod"),
    ("poddisruptionbudget.yaml", "spec.maxUnavailabel", 1, "maxUnavailabel"),
    ("servicemonitor.yaml", "spec.endpoints.0.intervall", "15s", "intervall"),
    ("prometheusrule.yaml", "spec.groups.0.rules.0.expression", "up == 0", "expression"),
    ("service.yaml", "spec.ports.0.port", "http", "expected integer"),
]


@pytest.mark.parametrize(("name", "path", "value", "named"), BROKEN)
def test_kubeconform_rejects_a_broken_copy(
    deploy_tools: Path, tmp_path: Path, name: str, path: str, value: Any, named: str
) -> None:
    doc = yaml.safe_load((K8S / name).read_text())
    _set(doc, path, value)
    broken = tmp_path / name
    broken.write_text(yaml.safe_dump(doc))
    proc = kubeconform(deploy_tools, broken)
    assert proc.returncode != 0, proc.stdout
    assert named in proc.stdout, proc.stdout


def test_kubeconform_fails_a_kind_it_has_no_schema_for(deploy_tools: Path, tmp_path: Path) -> None:
    # A missing schema must not pass as "skipped".
    odd = tmp_path / "odd.yaml"
    odd.write_text("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: x}\n")
    proc = kubeconform(deploy_tools, odd)
    assert proc.returncode != 0
    assert "could not find schema" in proc.stdout


def test_manifests_agree_with_the_worker_and_the_image() -> None:
    assert check_kubernetes(load_all(), yaml.safe_load(ALERTS.read_text())) == []


def test_the_deliverer_deployment_agrees_with_its_settings_and_endpoints() -> None:
    assert check_deliver(load_all()) == []
    docs = copy.deepcopy(load_all())
    endpoints = next(d for d in docs if d["metadata"]["name"] == "usage-moments-endpoints")
    endpoints["data"]["endpoints.toml"] += "timeout = 3\n"
    assert any("timeout: unknown field" in p for p in check_deliver(docs))


def _pod_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    env: list[dict[str, Any]] = sts["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def _configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    return data


def _statefulset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "StatefulSet")


MUTATIONS = {
    "unknown variable": (
        lambda d: _configmap(d).update(MOMENTS_PARTITONS="12"),
        "MOMENTS_PARTITONS is not a setting",
    ),
    "value the worker rejects": (
        lambda d: _configmap(d).update(MOMENTS_SHUTDOWN_TIMEOUT="forever"),
        "MOMENTS_SHUTDOWN_TIMEOUT",
    ),
    "number not text": (
        lambda d: _configmap(d).update(MOMENTS_PARTITIONS=12),
        "MOMENTS_PARTITIONS is int",
    ),
    "grace below shutdown timeout": (
        lambda d: _statefulset(d)["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=30
        ),
        "terminationGracePeriodSeconds 30",
    ),
    "token in the ConfigMap": (
        lambda d: _configmap(d).update(MOMENTS_WEB_TOKEN="s3cret"),  # noqa: S106 - a made-up value
        "ConfigMap holds the secret MOMENTS_WEB_TOKEN",
    ),
    "shared instance id": (
        lambda d: next(e for e in _pod_env(d) if e["name"] == "MOMENTS_INSTANCE_ID").update(
            value="worker"
        ),
        "MOMENTS_INSTANCE_ID is 'worker'",
    ),
    "readiness on /healthz": (
        lambda d: _statefulset(d)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
            "httpGet"
        ].update(path="/healthz"),
        "readinessProbe",
    ),
    "state not on the claim": (
        lambda d: _configmap(d).update(MOMENTS_DATA_DIR="/data"),
        "no volumeClaimTemplate mounted at /data",
    ),
    "rules drifted": (
        lambda d: next(x for x in d if x["kind"] == "PrometheusRule")["spec"]["groups"][0]["rules"][
            0
        ].update({"for": "1m"}),
        "PrometheusRule's spec differs",
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_cross_check_catches(case: str) -> None:
    docs = copy.deepcopy(load_all())
    mutate, named = MUTATIONS[case]
    mutate(docs)
    problems = check_kubernetes(docs, yaml.safe_load(ALERTS.read_text()))
    assert any(named in p for p in problems), problems


def test_prometheusrule_is_generated_from_alerts_yml() -> None:
    # Byte for byte what the generator writes now: edit alerts.yml, rerun the script.
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifests())


def unknown_settings_named(text: str) -> list[str]:
    """``MOMENTS_*`` names in a manifest's text, comments included, that no setting reads."""
    named = set(re.findall(r"MOMENTS_[A-Z0-9_]*[A-Z0-9]", text))
    return sorted(named - set(VARIABLES_BY_NAME))


@pytest.mark.parametrize("manifest", manifests(), ids=lambda p: p.name)
def test_manifests_name_only_declared_settings(manifest: Path) -> None:
    # The values are parsed by check_kubernetes; this covers the comments too, so a setting
    # renamed or removed in config/settings.py cannot live on in the ConfigMap's notes.
    assert unknown_settings_named(manifest.read_text()) == []


def test_a_removed_setting_in_a_comment_is_caught() -> None:
    text = (K8S / "configmap.yaml").read_text() + "  # MOMENTS_BATCH_WINDOW: 50ms\n"
    assert unknown_settings_named(text) == ["MOMENTS_BATCH_WINDOW"]
