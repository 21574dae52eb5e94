"""Static checks of deploy/: Kubernetes schemas, compose wiring, Prometheus, Grafana, Dockerfile.

No container engine or cluster is needed. The Kubernetes manifests are validated against the
OpenAPI schemas that ship inside the ``kubernetes-validate`` wheel (offline), pinned to one
Kubernetes version. Every ``FEEDSERVER_*`` name in deploy/ must be a real ``Settings`` field,
the environments given to the processes must load as ``Settings``, every ``feedserver ...``
command line must parse with the real CLI parser, and every metric the dashboard queries must
be one that ``feedserver.metrics.Metrics`` declares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml

from feedserver.cli import build_parser
from feedserver.cli.command import command_of
from feedserver.config import PREFIX, Settings, load_settings
from feedserver.feeds.events.membership import member_from_hostname, membership
from feedserver.metrics import Metrics
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.31.0"
SETTING_NAMES = {f.name for f in msgspec.structs.fields(Settings)}



def _declared_metrics() -> set[str]:
    # The names Prometheus stores: prometheus_client adds ``_total`` to counters.
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


# Every metric the code declares; the dashboard may only query these.
METRICS = _declared_metrics()
EVENTS_CONSUMERS = {"events-consumer-0", "events-consumer-1"}  # one compose service per member
FEEDSERVER_SERVICES = {
    "api", "events-follow", "usage-consumer", "snapshot-builder", "diff-builder",
    "batches-builder",
} | EVENTS_CONSUMERS
BATCH_SERVICES = {"snapshot-builder", "diff-builder", "batches-builder"}
# Long-running services and the path each serves metrics on (None: serves no HTTP at all).
METRICS_PATHS = {"api": "/metrics", "usage-consumer": "/metrics", "events-follow": "/metrics",
                 **{name: "/metrics" for name in EVENTS_CONSUMERS}}
# Kinds whose pods run feedserver.
WORKLOADS = ("Deployment", "StatefulSet", "CronJob")
SERVERS = ("Deployment", "StatefulSet")


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_docs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path):
            if doc["kind"] != "Kustomization":
                yield path.name, doc


def _k8s(kind: str, name: str) -> dict[str, Any]:
    for _, doc in _k8s_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        spec: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    return dict(doc["spec"]["template"]["spec"])


def _interpolate(value: str) -> str:
    # Compose's ${VAR:-default} with nothing set in the environment; $$ is a literal $.
    value = re.sub(r"\$\{(\w+)(?::?[-?]([^}]*))?\}", lambda m: m.group(2) or "", value)
    return value.replace("$$", "$")


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --- Kubernetes --------------------------------------------------------------------------------


K8S_DOCS = list(_k8s_docs())


@pytest.mark.parametrize(
    "doc", [d for _, d in K8S_DOCS], ids=[f"{f}:{d['kind']}" for f, d in K8S_DOCS]
)
def test_k8s_manifest_matches_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_validator_rejects_unknown_fields() -> None:
    # Guards the test above: a typo must fail, offline, with the pinned version.
    bad = json.loads(json.dumps(_k8s("Deployment", "feedserver-api")))
    bad["spec"]["replica"] = bad["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_one_namespace() -> None:
    (kustomization,) = _yaml_docs(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    for _, doc in K8S_DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"]


def test_k8s_environment_loads_as_settings() -> None:
    config = _k8s("ConfigMap", "feedserver-config")["data"]
    secret = _k8s("Secret", "feedserver-secrets")["stringData"]
    assert not set(config) & set(secret)
    settings = load_settings(env={**config, **secret})
    assert settings.mode == "distributed"
    assert settings.blob_store_kind == "s3"
    assert settings.events_backend == "kafka"
    # The Secret is a template: the sensitive keys are there, each with a placeholder only.
    for key in ("TOKEN_SECRET", "DATABASE_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert "REPLACE_ME" in secret[PREFIX + key]


def test_k8s_pods_take_config_from_configmap_and_secret_and_run_locked_down() -> None:
    for _, doc in K8S_DOCS:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        mounts_needed = {"/tmp", "/var/lib/feedserver"}
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod.get("initContainers", []) + pod["containers"]:
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"feedserver-config", "feedserver-secrets"}
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounts = container["volumeMounts"]
            writable = {m["mountPath"] for m in mounts if m["name"] in empty_dirs}
            assert mounts_needed <= writable, container["name"]


def test_api_deployment_probes_replicas_and_draining() -> None:
    deployment = _k8s("Deployment", "feedserver-api")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod_spec(deployment)
    assert pod["terminationGracePeriodSeconds"] >= 60
    (container,) = pod["containers"]
    assert container["args"][0] == "serve"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert _k8s("Service", "feedserver-api")["spec"]["selector"] == labels
    pdb = _k8s("PodDisruptionBudget", "feedserver-api")
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    hpa = _k8s("HorizontalPodAutoscaler", "feedserver-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "feedserver-api"
    assert hpa["minReplicas"] >= 2


def _members(args: list[str]) -> int:
    return int(_flag_value(args, "--members") or 1)


def test_event_consumer_is_a_statefulset_of_static_members() -> None:
    # Static membership: pod <name>-I is member I of --members. A StatefulSet never runs two
    # pods of one ordinal, so no partition is ever owned twice, not even in a rollout.
    events = _k8s("StatefulSet", "feedserver-events-consumer")
    spec = events["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    args = _pod_spec(events)["containers"][0]["args"]
    assert args[:2] == ["events", "consume"]
    assert _flag_value(args, "--member") == "auto"
    assert spec["replicas"] == _members(args) == 2
    for ordinal in range(spec["replicas"]):
        member = member_from_hostname(f"{events['metadata']['name']}-{ordinal}")
        assert membership(member, _members(args)).member == ordinal
    service = _k8s("Service", spec["serviceName"])["spec"]
    assert service["clusterIP"] == "None"
    assert service["selector"] == spec["selector"]["matchLabels"]


def test_usage_consumer_replicas_may_overlap() -> None:
    # Commits after the ledger, appends serialised on the chain head row, usage_id unique:
    # replicas reading the same records are safe.
    usage = _k8s("Deployment", "feedserver-usage-consumer")
    assert _pod_spec(usage)["containers"][0]["args"][:2] == ["usage", "consume"]
    assert usage["spec"]["replicas"] >= 1
    assert usage["spec"]["strategy"]["type"] == "RollingUpdate"


def test_events_follower_is_one_pod_never_two() -> None:
    # Two followers of one stored position would append the same events twice: one replica,
    # and Recreate (a rolling update would run the old and the new pod side by side).
    follow = _k8s("Deployment", "feedserver-events-follow")
    assert follow["spec"]["replicas"] == 1
    assert follow["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = _pod_spec(follow)["containers"]
    assert container["args"][:2] == ["events", "follow"]


def test_the_followed_topic_is_read_by_the_consumers(compose: dict[str, Any]) -> None:
    # `events follow` refuses to start otherwise; the consumers share the same settings.
    config = _k8s("ConfigMap", "feedserver-config")["data"]
    secret = _k8s("Secret", "feedserver-secrets")["stringData"]
    k8s = load_settings(env={**config, **secret})
    env = {k: _interpolate(str(v))
           for k, v in compose["services"]["events-follow"]["environment"].items()}
    for settings in (k8s, load_settings(env=env)):
        assert settings.eventstreams_topic in settings.event_topics
        assert settings.content_source_url and "{domain}" in settings.content_source_url
    init = " ".join(compose["services"]["kafka-init"]["command"])
    assert f"t {k8s.eventstreams_topic} 1" in init  # one partition: the stream's order


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def test_k8s_probes_ports_and_scrape_annotations_match_what_each_process_serves() -> None:
    for _, doc in K8S_DOCS:
        if doc["kind"] not in SERVERS:
            continue
        pod = _pod_spec(doc)
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        (container,) = pod["containers"]
        args = container["args"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if args[0] == "serve":
            listening = int(_flag_value(args, "--port") or Settings().port)
            paths = {"/healthz", "/readyz", "/metrics"}
        elif args[1:2] in (["consume"], ["follow"]) and _flag_value(args, "--metrics-port"):
            # prometheus_client's exporter: /metrics is the one path it is meant to serve.
            listening, paths = int(_flag_value(args, "--metrics-port") or 0), {"/metrics"}
        else:
            listening, paths = 0, set()
        assert set(ports.values()) <= {listening}, (container["name"], ports)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            get = container[probe].get("httpGet")
            assert get, (container["name"], probe)
            assert get["path"] in paths, (container["name"], probe, get["path"])
            assert ports.get(get["port"], get["port"]) == listening, (container["name"], probe)
        if annotations.get("prometheus.io/scrape") == "true":
            assert "/metrics" in paths, container["name"]
            assert int(annotations["prometheus.io/port"]) == listening, container["name"]
            assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"
        else:
            assert "/metrics" not in paths, f"{container['name']} serves metrics, not scraped"


def test_daily_build() -> None:
    cron = _k8s("CronJob", "feedserver-daily-build")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod_spec(cron)
    assert pod["restartPolicy"] == "Never"
    (build,) = pod["initContainers"]
    assert build["args"][:2] == ["snapshot", "build"] and "--dump" in build["args"]
    assert pod["containers"][0]["args"] == ["diff", "build"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {_k8s("PersistentVolumeClaim", "feedserver-dumps")["metadata"]["name"]}


def test_hourly_batches() -> None:
    cron = _k8s("CronJob", "feedserver-hourly-batches")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    minute, hour, *rest = spec["schedule"].split()
    assert minute.isdigit() and hour == "*" and rest == ["*", "*", "*"]
    # A stuck run must end before it could hold back more than the next hour.
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600
    pod = _pod_spec(cron)
    assert pod["restartPolicy"] == "Never"
    assert [c["args"] for c in pod["containers"]] == [["batches", "build"]]


def test_optional_pod_monitor_is_outside_the_base() -> None:
    (monitor,) = _yaml_docs(K8S / "optional" / "servicemonitor.yaml")
    assert monitor["apiVersion"].startswith("monitoring.coreos.com/")
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    declared = {
        p["name"]
        for _, doc in K8S_DOCS
        if doc["kind"] in SERVERS
        for c in _pod_spec(doc)["containers"]
        for p in c.get("ports", [])
    }
    assert ports <= declared


# --- feedserver command lines --------------------------------------------------------------------


def _compose_doc() -> dict[str, Any]:
    (doc,) = _yaml_docs(DEPLOY / "compose.yaml")
    return doc


def _command_lines() -> Iterator[tuple[str, list[str]]]:
    """Every argv given to the ``feedserver`` entrypoint in deploy/ (k8s, compose, Dockerfile)."""
    for path, doc in K8S_DOCS:
        if doc["kind"] in WORKLOADS:
            pod = _pod_spec(doc)
            for container in pod.get("initContainers", []) + pod["containers"]:
                assert "command" not in container, "the image's ENTRYPOINT is feedserver"
                yield f"{path}:{container['name']}", container["args"]
    for name, service in _compose_doc()["services"].items():
        if name in FEEDSERVER_SERVICES:
            yield f"compose.yaml:{name}", [_interpolate(str(a)) for a in service["command"]]
    (cmd,) = [json.loads(v) for k, v in _instructions(DEPLOY / "Dockerfile") if k == "CMD"]
    yield "Dockerfile:CMD", cmd


COMMAND_LINES = list(_command_lines())


@pytest.mark.parametrize("argv", [a for _, a in COMMAND_LINES], ids=[n for n, _ in COMMAND_LINES])
def test_command_line_parses_with_the_real_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"feedserver {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert callable(command_of(args))


def test_command_line_check_rejects_unknown_flags() -> None:
    # Guards the test above: argparse exits on an unknown flag rather than ignoring it.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["events", "consume", "--metrics-prot", "8080"])


# --- settings names everywhere ------------------------------------------------------------------


def test_every_feedserver_variable_in_deploy_is_a_setting() -> None:
    unknown = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for name in re.findall(r"\bFEEDSERVER_[A-Z0-9_]+", path.read_text()):
            if name[len(PREFIX):].lower() not in SETTING_NAMES:
                unknown[name] = path.relative_to(ROOT)
    assert not unknown, f"not fields of feedserver.config.Settings: {unknown}"


# --- compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose_doc()


def test_compose_services_images_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"kafka", "kafka-init", "minio", "minio-init", "postgres", "gateway",
                "prometheus", "grafana"} | FEEDSERVER_SERVICES
    assert expected <= set(services)
    for name, service in services.items():
        assert service.get("image"), name
        assert not service["image"].endswith(":latest"), name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in s["image"] for s in services.values())
    assert services["api"]["deploy"]["replicas"] == 2
    for name in FEEDSERVER_SERVICES:
        assert services[name]["image"] == services["api"]["image"]
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert ("batch" in services[name].get("profiles", [])) == (name in BATCH_SERVICES)
    # One service per static member, each exactly one replica, all with the same --members.
    commands = [services[name]["command"] for name in sorted(EVENTS_CONSUMERS)]
    assert all(c[:2] == ["events", "consume"] for c in commands)
    assert {_members(c) for c in commands} == {len(EVENTS_CONSUMERS)}
    assert [_flag_value(c, "--member") for c in commands] == \
        [str(i) for i in range(len(EVENTS_CONSUMERS))]
    for name in EVENTS_CONSUMERS:
        assert services[name].get("deploy", {}).get("replicas", 1) == 1
    assert services["usage-consumer"]["command"][:2] == ["usage", "consume"]
    assert services["events-follow"]["command"][:2] == ["events", "follow"]
    assert services["events-follow"].get("deploy", {}).get("replicas", 1) == 1
    assert services["snapshot-builder"]["command"][:2] == ["snapshot", "build"]
    assert services["diff-builder"]["command"] == ["diff", "build"]
    assert services["batches-builder"]["command"] == ["batches", "build"]


def test_compose_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    assert {"kafka-init", "minio-init"} | BATCH_SERVICES <= one_shot
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        if name not in one_shot and METRICS_PATHS.get(name, "") is not None:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            assert spec["condition"] in conditions, (name, dep)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            if spec["condition"] == "service_completed_successfully":
                assert dep in one_shot, (name, dep)
    for name in FEEDSERVER_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"


def test_compose_healthchecks_probe_what_each_process_serves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # The API serves /healthz on its --port.
    assert "http://127.0.0.1:8080/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert _flag_value(services["api"]["command"], "--port") == "8080"
    # The consumers serve only /metrics, on their --metrics-port.
    for name in ("usage-consumer", "events-follow", *sorted(EVENTS_CONSUMERS)):
        port = _flag_value(services[name]["command"], "--metrics-port")
        test = " ".join(services[name]["healthcheck"]["test"])
        assert port and f"http://127.0.0.1:{port}/metrics" in test, name


def test_compose_feedserver_environment_loads_as_settings(compose: dict[str, Any]) -> None:
    for name in FEEDSERVER_SERVICES:
        env = {k: _interpolate(str(v)) for k, v in compose["services"][name]["environment"].items()}
        settings = load_settings(env=env)
        assert settings.mode == "distributed", name
        assert settings.database.startswith("postgresql://")
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert settings.token_secret


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = _interpolate(volume.split(":")[0])
            if source.startswith(".") and name not in BATCH_SERVICES:
                assert (DEPLOY / source).exists(), (name, source)


# --- Prometheus and Grafana ---------------------------------------------------------------------


def test_prometheus_scrapes_every_long_running_feedserver_service(compose: dict[str, Any]) -> None:
    (config,) = _yaml_docs(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = config["scrape_configs"]
    assert len({j["job_name"] for j in jobs}) == len(jobs)
    hosts = set()
    for job in jobs:
        for sd in job.get("dns_sd_configs", []):
            hosts |= set(sd["names"])
        for static in job.get("static_configs", []):
            hosts |= {t.rsplit(":", 1)[0] for t in static["targets"]}
    assert hosts - {"127.0.0.1"} == {n for n, path in METRICS_PATHS.items() if path}
    assert set(METRICS_PATHS) == FEEDSERVER_SERVICES - BATCH_SERVICES
    for job in jobs:
        targets = [t for s in job.get("static_configs", []) for t in s["targets"]]
        targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", [])
                    for n in sd["names"]]
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host in METRICS_PATHS:
                assert job.get("metrics_path", "/metrics") == METRICS_PATHS[host]
                command = compose["services"][host]["command"]
                flag = "--port" if command[0] == "serve" else "--metrics-port"
                assert _flag_value(command, flag) == port, target


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\bfeedserver_[a-z0-9_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_grafana_dashboard_panels_use_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "feedserver.json").read_text())
    (datasource,) = _yaml_docs(DEPLOY / "grafana" / "provisioning" / "datasources" /
                               "prometheus.yaml")[0]["datasources"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert names and names <= METRICS, (panel["title"], names - METRICS)
            used |= names
    titles = " ".join(p["title"].lower() for p in panels)
    for word in ("request rate", "p50", "p99", "bytes", "lag", "dead-letter", "articles"):
        assert word in titles


def test_grafana_dashboard_provider_points_at_the_mounted_folder(compose: dict[str, Any]) -> None:
    (provider,) = _yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" /
                             "feedserver.yaml")[0]["providers"]
    mounts = {v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    assert provider["options"]["path"] in mounts


def test_dashboard_metric_names_are_documented() -> None:
    dashboard = (DEPLOY / "grafana" / "dashboards" / "feedserver.json").read_text()
    doc = (ROOT / "docs" / "deploy.md").read_text()
    used = _metric_names(dashboard)
    assert used
    assert not {name for name in used if f"`{name}`" not in doc}


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    steps = _instructions(DEPLOY / "Dockerfile")
    froms = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    assert len(froms) >= 2
    final = steps[froms[-1]:]
    assert "python:3.11" in (steps[0][1] + final[0][1]) or any(
        k == "ARG" and "python:3.11" in v for k, v in steps
    )
    assert any(k == "RUN" and "pip install ." in v for k, v in steps[: froms[-1]])
    final_text = " ".join(v for _, v in final)
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_text
    users = [v for k, v in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (healthcheck,) = [v for k, v in final if k == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["feedserver"]') in final
    (cmd,) = [json.loads(v) for k, v in final if k == "CMD"]
    assert cmd[0] == "serve"


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "*" in lines and {"!pyproject.toml", "!feedserver/"} <= set(lines)
    for _, source in [s for s in _instructions(DEPLOY / "Dockerfile") if s[0] == "COPY"]:
        if "--from" not in source:
            for path in source.split()[:-1]:
                assert (ROOT / path).exists(), path
