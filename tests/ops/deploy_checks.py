"""Cross-checks of the deployment files against what the worker and the image know.

Schemas say a file is well-formed; these say it would work: every ``MOMENTS_*``
variable a deployment sets exists in ``config/settings.py`` and its value passes the
settings parser, volumes sit at the image's data directory, each worker has its own
state and instance id, grace periods outlast ``MOMENTS_SHUTDOWN_TIMEOUT``, scrape
targets and probes point at the workers' port, and the job name is the one the
alerts select. Every function returns a list of problems (empty when all is well),
so the tests can show that a broken copy is caught.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.settings import VARIABLES, Settings, load_settings, unknown_variables
from domain.errors import SettingsError

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
JOB = "usage-moments"
"""The scrape job every alert and dashboard query selects (docs/operations.md)."""

SECRET_VARIABLES = frozenset(v.name for v in VARIABLES if v.secret)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def image_data_dir() -> str:
    """The image's state directory: Dockerfile's MOMENTS_DATA_DIR (also its VOLUME)."""
    text = DOCKERFILE.read_text()
    match = re.search(r"MOMENTS_DATA_DIR=(\S+)", text)
    if match is None:
        raise AssertionError("Dockerfile sets no MOMENTS_DATA_DIR")
    data_dir = match.group(1).rstrip("\\").strip()
    if f'VOLUME ["{data_dir}"]' not in text:
        raise AssertionError(f"Dockerfile's VOLUME is not {data_dir}")
    return data_dir


def image_uid() -> int:
    """The uid the image runs as (Dockerfile ``USER uid:gid``)."""
    match = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise AssertionError("Dockerfile has no numeric USER")
    return int(match.group(1))


def duration_s(text: str) -> float:
    """A compose-style duration (``45s``, ``1m``) in seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def settings_problems(env: Mapping[str, str], where: str) -> tuple[list[str], Settings | None]:
    """Problems of a worker environment, and the settings it gives when it has none.

    Values must be text (as the process sees them); names must be known; the
    settings parser must accept the whole set; secrets must not be literal values
    (the caller passes placeholders for values taken from a secret store).
    """
    problems: list[str] = []
    for name, value in env.items():
        if name.startswith("MOMENTS_") and not isinstance(value, str):
            problems.append(f"{where}: {name} is {type(value).__name__}, not text")
    unknown = unknown_variables(env)
    problems += [f"{where}: {name} is not a setting of config/settings.py" for name in unknown]
    try:
        settings = load_settings({k: str(v) for k, v in env.items()})
    except SettingsError as err:
        problems.append(f"{where}: rejected by config/settings.py: {err}")
        return problems, None
    return problems, (None if problems else settings)


# --------------------------------------------------------------------------- compose

_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::([?-])([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` over a document.

    Raises:
        KeyError: a required variable (``:?``) is unset or empty; its message.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if current:
            return current
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _INTERPOLATION.sub(one, value)


def compose_workers(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run ``moments worker`` (built from the project's Dockerfile)."""
    return {
        name: svc
        for name, svc in doc.get("services", {}).items()
        if isinstance(svc, dict) and isinstance(svc.get("build"), dict)
    }


def _mounts(svc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a service's short-syntax volumes."""
    out = []
    for entry in svc.get("volumes", []):
        parts = str(entry).split(":")
        out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return out


def _container_port(svc: Mapping[str, Any], port: int) -> list[str]:
    """Host bindings (``ip:host``) of a service's published container ``port``."""
    out = []
    for entry in svc.get("ports", []):
        *host, container = str(entry).split(":")
        if int(container.split("/")[0]) == port:
            out.append(":".join(host))
    return out


def check_compose(
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    base: Path,
    prometheus_config: Mapping[str, Any],
    grafana_datasources: Mapping[str, Any],
    grafana_dashboards: Mapping[str, Any],
) -> list[str]:
    """Everything deploy/compose.yaml promises beyond its schema (see the module doc).

    ``raw`` is the parsed file before interpolation, ``env`` the variables compose
    would interpolate, ``base`` the directory relative paths start from.
    """
    problems: list[str] = []
    try:
        doc = interpolate(raw, env)
    except KeyError as err:
        return [f"compose needs a variable: {err}"]
    services: dict[str, Any] = doc.get("services", {})
    workers = compose_workers(doc)
    data_dir = image_data_dir()
    if len(workers) < 2:
        problems.append(f"compose runs {len(workers)} worker(s), not 2")

    # Images: pinned, never "latest".
    for name, svc in services.items():
        image = str(svc.get("image", ""))
        if name not in workers and (":" not in image or image.endswith(":latest")):
            problems.append(f"{name}: image {image!r} is not pinned to a version")

    # Host files mounted into containers exist; host ports are published once.
    published: dict[str, str] = {}
    for name, svc in services.items():
        for source, _ in _mounts(svc):
            if source.startswith((".", "/")) and not (base / source).exists():
                problems.append(f"{name}: mounted file {source} does not exist")
        for entry in svc.get("ports", []):
            host = ":".join(str(entry).split(":")[:-1])
            if host in published:
                problems.append(f"{name}: host port {host} also published by {published[host]}")
            published[host] = name

    kafka_hosts = _kafka_advertised(services)
    instance_ids: dict[str, str] = {}
    volumes: dict[str, str] = {}
    scrape_wanted: set[str] = set()
    for name, svc in workers.items():
        build = svc["build"]
        if not (base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file():
            problems.append(f"{name}: build context has no {build.get('dockerfile')}")
        # The image sets MOMENTS_DATA_DIR; the service's environment comes on top.
        env_vars = {"MOMENTS_DATA_DIR": data_dir}
        env_vars.update({str(k): v for k, v in (svc.get("environment") or {}).items()})
        raw_env = raw["services"][name].get("environment") or {}
        for secret in SECRET_VARIABLES & set(raw_env):
            if "${" not in str(raw_env[secret]):
                problems.append(f"{name}: {secret} is written in the file; take it from ${{...}}")
        found, settings = settings_problems(env_vars, f"compose {name}")
        problems += found
        if settings is None:
            continue
        if settings.web_advertised_host != name:
            problems.append(
                f"{name}: MOMENTS_WEB_ADVERTISED_HOST is {settings.web_advertised_host!r}, "
                "not the service name peers resolve"
            )
        if settings.instance_id is None:
            problems.append(f"{name}: no MOMENTS_INSTANCE_ID")
        elif settings.instance_id in instance_ids:
            problems.append(
                f"{name}: MOMENTS_INSTANCE_ID {settings.instance_id} also used by "
                f"{instance_ids[settings.instance_id]}"
            )
        else:
            instance_ids[settings.instance_id] = name
        state = [src for src, target in _mounts(svc) if target == str(settings.data_dir)]
        if len(state) != 1:
            problems.append(f"{name}: no volume at the state directory {settings.data_dir}")
        elif state[0] in volumes:
            problems.append(f"{name}: state volume {state[0]} shared with {volumes[state[0]]}")
        else:
            volumes[state[0]] = name
        grace = duration_s(str(svc.get("stop_grace_period", "10s")))
        if grace <= settings.shutdown_timeout_s:
            problems.append(
                f"{name}: stop_grace_period {grace:.0f}s is not above "
                f"MOMENTS_SHUTDOWN_TIMEOUT {settings.shutdown_timeout_s:.0f}s"
            )
        for broker in settings.kafka_bootstrap:
            if broker not in kafka_hosts:
                problems.append(f"{name}: broker {broker} is not a listener kafka advertises")
        scrape_wanted.add(f"{name}:{settings.web_port}")
        if settings.web_port and not _container_port(svc, settings.web_port):
            problems.append(f"{name}: MOMENTS_WEB_PORT {settings.web_port} is not published")

    problems += _check_prometheus(services, prometheus_config, scrape_wanted)
    problems += _check_grafana(services, grafana_datasources, grafana_dashboards)
    return problems


def _kafka_advertised(services: Mapping[str, Any]) -> set[str]:
    """host:port of every listener the kafka service advertises."""
    hosts: set[str] = set()
    for svc in services.values():
        if str(svc.get("image", "")).startswith("apache/kafka:"):
            listeners = str((svc.get("environment") or {}).get("KAFKA_ADVERTISED_LISTENERS", ""))
            hosts |= {entry.split("://", 1)[1] for entry in listeners.split(",") if "://" in entry}
    return hosts


def _check_prometheus(
    services: Mapping[str, Any], config: Mapping[str, Any], wanted: set[str]
) -> list[str]:
    problems: list[str] = []
    prom = services.get("prometheus")
    if prom is None:
        return ["compose has no prometheus service"]
    jobs = {job.get("job_name"): job for job in config.get("scrape_configs", [])}
    if JOB not in jobs:
        return [f"prometheus.yml has no job {JOB!r} (the job every alert selects)"]
    targets = {t for sc in jobs[JOB].get("static_configs", []) for t in sc.get("targets", [])}
    if targets != wanted:
        problems.append(
            f"prometheus.yml scrapes {sorted(targets)}, the workers are {sorted(wanted)}"
        )
    alerts_target = [t for s, t in _mounts(prom) if s.endswith("config/prometheus/alerts.yml")]
    if not alerts_target:
        problems.append("prometheus does not mount config/prometheus/alerts.yml")
    elif alerts_target[0] not in config.get("rule_files", []):
        problems.append(f"prometheus.yml's rule_files do not load {alerts_target[0]}")
    config_target = [t for s, t in _mounts(prom) if s.endswith("prometheus.yml")]
    flags = [str(a) for a in prom.get("command", [])]
    if not config_target or f"--config.file={config_target[0]}" not in flags:
        problems.append("prometheus is not started with the mounted prometheus.yml")
    return problems


def _check_grafana(
    services: Mapping[str, Any], datasources: Mapping[str, Any], dashboards: Mapping[str, Any]
) -> list[str]:
    problems: list[str] = []
    grafana = services.get("grafana")
    if grafana is None:
        return ["compose has no grafana service"]
    # Prometheus listens on 9090 in its container; Grafana reaches it by service name.
    prom_urls = {"http://prometheus:9090"}
    sources = [d for d in datasources.get("datasources", []) if d.get("type") == "prometheus"]
    if not sources or sources[0].get("url") not in prom_urls:
        problems.append(f"grafana's Prometheus data source is not one of {sorted(prom_urls)}")
    dash_targets = [t for s, t in _mounts(grafana) if s.endswith("config/grafana/moments.json")]
    paths = {p.get("options", {}).get("path") for p in dashboards.get("providers", [])}
    if not dash_targets or str(Path(dash_targets[0]).parent) not in paths:
        problems.append("grafana's dashboard provider does not read the mounted moments.json")
    mounted = {t for _, t in _mounts(grafana)}
    for sub in ("datasources", "dashboards"):
        if f"/etc/grafana/provisioning/{sub}" not in mounted:
            problems.append(f"grafana does not mount its {sub} provisioning")
    return problems


# ------------------------------------------------------------------------ kubernetes

PEAK_RSS_BYTES = 1_846e6
"""Peak RSS of one worker holding 100,000 accounts (docs/capacity.md, "Memory")."""
_POD = {"POD_NAME": "usage-moments-0", "POD_NAMESPACE": "moments"}
"""Values the downward API would give the first pod, for $(VAR) expansion."""
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G)?$")
_QUANTITY_BYTES = {
    None: 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity_bytes(text: str) -> float:
    """A Kubernetes memory quantity in bytes."""
    match = _QUANTITY.match(str(text))
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _QUANTITY_BYTES[match.group(2)]


def component(doc: Mapping[str, Any]) -> str | None:
    """A manifest's ``app.kubernetes.io/component`` label (worker, deliver...)."""
    labels = doc.get("metadata", {}).get("labels", {})
    value = labels.get("app.kubernetes.io/component")
    return value if isinstance(value, str) else None


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The workers' manifests by kind (one of each is expected); those of ``moments deliver``
    (component ``deliver``) are checked by :func:`check_deliver`."""
    return {
        d["kind"]: d
        for d in docs
        if isinstance(d, dict) and "kind" in d and component(d) != "deliver"
    }


def check_deliver(docs: list[dict[str, Any]]) -> list[str]:
    """``moments deliver``'s Deployment: its settings (with the workers' ConfigMap) parse,
    it runs ``deliver``, and its endpoints file is the shipped ConfigMap's, which parses with
    every secret it names present in the pod's environment."""
    from domain.delivery.endpoints import parse_endpoints
    from domain.errors import EndpointsError
    from domain.wording.kinds import KINDS

    problems: list[str] = []
    deploys = [d for d in docs if d.get("kind") == "Deployment" and component(d) == "deliver"]
    maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    if len(deploys) != 1:
        return [f"expected one Deployment of moments deliver, found {len(deploys)}"]
    (deploy,) = deploys
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    if container.get("args") != ["deliver"]:
        problems.append(f"the deliver container runs {container.get('args')}, not deliver")
    env, found = pod_environment(deploy, maps)
    problems += found
    # The file exists in the pod only (checked below against the mounted ConfigMap).
    path = env.pop("MOMENTS_ENDPOINTS_FILE", "")
    found, settings = settings_problems(env, "Deployment deliver")
    problems += found
    if settings is None:
        return problems
    mounts = [
        m
        for m in container.get("volumeMounts", [])
        if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"].get("volumes", [])}
    source = volumes.get(mounts[0]["name"], {}).get("configMap", {}).get("name") if mounts else None
    if source not in maps:
        return [*problems, f"MOMENTS_ENDPOINTS_FILE {path} is not a shipped ConfigMap's file"]
    text = maps[source]["data"].get(path.rsplit("/", 1)[1], "")
    secrets = {name: "whsec_" + "A" * 44 for name in env}  # present (a placeholder value)
    try:
        parse_endpoints(tomllib.loads(text), secrets, KINDS, path)
    except (EndpointsError, tomllib.TOMLDecodeError) as exc:
        problems.append(str(exc))
    return problems


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_environment(
    sts: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """The worker container's environment as the first pod would see it, and problems.

    ConfigMap entries come first, then ``env`` in order with ``$(VAR)`` expanded;
    values from a Secret become a placeholder (their presence is what counts).
    """
    problems: list[str] = []
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name not in configmaps:
            problems.append(f"envFrom names ConfigMap {name!r}, which is not shipped")
            continue
        env.update({k: v for k, v in configmaps[name].get("data", {}).items()})
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(entry["value"])
            )
            if "$(" in env[name]:
                problems.append(f"{name}: {entry['value']} refers to a variable not set before it")
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[name] = "secret-placeholder"
        elif "fieldRef" in entry.get("valueFrom", {}):
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            env[name] = {
                "metadata.name": _POD["POD_NAME"],
                "metadata.namespace": _POD["POD_NAMESPACE"],
            }.get(path, "field")
    return env, problems


def check_kubernetes(docs: list[dict[str, Any]], alerts: Mapping[str, Any]) -> list[str]:
    """Everything deploy/kubernetes promises beyond its schemas (see the module doc)."""
    problems: list[str] = []
    kinds = by_kind(docs)
    wanted = {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    }
    if missing := wanted - set(kinds):
        return [f"missing manifests: {sorted(missing)}"]
    sts, svc, pdb = kinds["StatefulSet"], kinds["Service"], kinds["PodDisruptionBudget"]
    smon, rule, cm = kinds["ServiceMonitor"], kinds["PrometheusRule"], kinds["ConfigMap"]
    pod_spec = sts["spec"]["template"]["spec"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    container = pod_spec["containers"][0]

    # Secrets only from Secrets: never in the ConfigMap, never a literal value.
    for name in SECRET_VARIABLES & set(cm.get("data", {})):
        problems.append(f"ConfigMap holds the secret {name}")
    for entry in container.get("env", []):
        if entry["name"] in SECRET_VARIABLES and "secretKeyRef" not in entry.get("valueFrom", {}):
            problems.append(f"{entry['name']} is not taken from a Secret")
    secret_names = {
        e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
    }
    if "MOMENTS_WEB_TOKEN" not in secret_names:
        problems.append("MOMENTS_WEB_TOKEN is not taken from a Secret")

    env, found = pod_environment(sts, {cm["metadata"]["name"]: cm})
    problems += found
    found, settings = settings_problems(env, "StatefulSet worker")
    problems += found
    if settings is None:
        return problems

    # Stable identity: instance id = pod name; advertised host = the pod's headless DNS name.
    if settings.instance_id != _POD["POD_NAME"]:
        problems.append(f"MOMENTS_INSTANCE_ID is {settings.instance_id!r}, not the pod name")
    headless = f"{_POD['POD_NAME']}.{sts['spec']['serviceName']}.{_POD['POD_NAMESPACE']}.svc"
    if settings.web_advertised_host != headless:
        problems.append(
            f"MOMENTS_WEB_ADVERTISED_HOST is {settings.web_advertised_host!r}, not {headless}"
        )
    if svc["metadata"]["name"] != sts["spec"]["serviceName"]:
        problems.append("the StatefulSet's serviceName is not the shipped Service")
    if svc["spec"].get("clusterIP") != "None":
        problems.append("the Service is not headless (clusterIP: None)")

    # State: a claim per pod at the data directory the settings give.
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    state = [
        m for m in container.get("volumeMounts", []) if m["mountPath"] == str(settings.data_dir)
    ]
    if len(state) != 1 or state[0]["name"] not in claims:
        problems.append(f"no volumeClaimTemplate mounted at {settings.data_dir}")
    if str(settings.data_dir) != image_data_dir():
        problems.append(f"MOMENTS_DATA_DIR {settings.data_dir} is not the image's volume")

    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    if grace <= settings.shutdown_timeout_s:
        problems.append(
            f"terminationGracePeriodSeconds {grace} is not above "
            f"MOMENTS_SHUTDOWN_TIMEOUT {settings.shutdown_timeout_s:.0f}s"
        )

    # Port and probes.
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if ports.get("http") != settings.web_port:
        problems.append(
            f"container port http is {ports.get('http')}, MOMENTS_WEB_PORT is {settings.web_port}"
        )
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", settings.web_port):
            problems.append(f"{probe} is not GET {path} on the worker's port")

    # Non-root, as the image's user.
    psc = pod_spec.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("runAsUser") != image_uid():
        problems.append(f"pod does not run as non-root uid {image_uid()}")
    if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
        problems.append("container allows privilege escalation")

    # Resources: at least the peak RSS measured at 100,000 accounts (docs/capacity.md).
    res = container.get("resources", {})
    if quantity_bytes(res.get("requests", {}).get("memory", "0")) < PEAK_RSS_BYTES:
        problems.append(
            f"memory request below the measured peak RSS ({PEAK_RSS_BYTES / 1e6:.0f} MB)"
        )
    if "memory" not in res.get("limits", {}):
        problems.append("no memory limit")

    # Selectors agree; the scrape job is the alerts' job.
    for what, selector in (
        ("StatefulSet", sts["spec"]["selector"]["matchLabels"]),
        ("Service", svc["spec"]["selector"]),
        ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"]),
    ):
        if not _matches(selector, pod_labels):
            problems.append(f"{what} selector does not match the pods")
    if not _matches(smon["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]):
        problems.append("ServiceMonitor selector does not match the Service")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    for endpoint in smon["spec"]["endpoints"]:
        if endpoint.get("port") not in svc_ports or endpoint.get("path", "/metrics") != "/metrics":
            problems.append("ServiceMonitor endpoint is not the Service's /metrics port")
    job = svc["metadata"]["labels"].get(smon["spec"].get("jobLabel", ""), svc["metadata"]["name"])
    if job != JOB:
        problems.append(f"ServiceMonitor gives job {job!r}; the alerts select {JOB!r}")
    if rule.get("spec") != alerts:
        problems.append("PrometheusRule's spec differs from config/prometheus/alerts.yml")
    return problems
