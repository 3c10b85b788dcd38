"""deploy/compose.yaml, loaded by compose-config: the compose-go loader that `docker compose
config` runs (the Docker client here has no compose plugin and no engine)."""

import json
import os
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, SETTINGS, Tools, env_names, image_env, must_be_set

SECRETS = {
    "PARKDESK_AUTH_SECRET": "a" * 32,
    "PARKDESK_METRICS_TOKEN": "m" * 24,
    "GRAFANA_ADMIN_PASSWORD": "g" * 12,
}


def load(tools: Tools, env: dict[str, str]) -> tuple[int, str, str]:
    # Only what the test gives: no variable of the developer's shell leaks into the check.
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **env}
    loaded = tools.run("compose-config", str(DEPLOY / "compose.yaml"), env=clean)
    return loaded.returncode, loaded.stdout, loaded.stderr


@pytest.fixture(scope="module")
def project(tools: Tools) -> dict[str, Any]:
    code, out, err = load(tools, SECRETS)
    assert code == 0, err
    resolved: dict[str, Any] = json.loads(out)
    return resolved


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(tools: Tools, missing: str) -> None:
    code, _, err = load(tools, {k: v for k, v in SECRETS.items() if k != missing})
    assert code != 0
    assert missing in err


def test_the_suite_runs_on_three_kafka_brokers_and_a_three_member_replica_set(
    project: dict[str, Any],
) -> None:
    services = project["services"]
    brokers = [name for name in services if name.startswith("kafka-")]
    assert len(brokers) == 3
    for name in brokers:
        env = services[name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert "healthcheck" in services[name]
    members = [name for name in services if name.startswith("mongo-") and name != "mongo-init"]
    assert len(members) == 3
    for name in members:
        assert services[name]["command"][:3] == ["mongod", "--replSet", "rs0"]
    assert all(f"{m}:27017" in services["mongo-init"]["command"][-1] for m in members)
    assert services["topics"]["environment"]["PARKDESK_TOPIC_REPLICATION_FACTOR"] == "3"
    assert services["topics"]["command"] == ["parkdesk-admin", "provision-topics"]


def test_services_start_only_on_healthy_dependencies(project: dict[str, Any]) -> None:
    services = project["services"]
    for name in SETTINGS:
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["mongo-init"]["condition"] == "service_completed_successfully"
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        assert services["topics"]["depends_on"][broker]["condition"] == "service_healthy"
    for member in ("mongo-1", "mongo-2", "mongo-3"):
        assert services["mongo-init"]["depends_on"][member]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_setting_a_deployment_needs_is_set_and_nothing_unknown(
    project: dict[str, Any], service: str
) -> None:
    settings = SETTINGS[service]
    environment = project["services"][service]["environment"]
    parkdesk = {name for name in environment if name.startswith("PARKDESK_")}
    assert parkdesk <= env_names(settings), f"{service} reads no {parkdesk - env_names(settings)}"
    missing = must_be_set(settings) - parkdesk - image_env()
    assert not missing, f"{service} lacks {sorted(missing)}"
    assert project["services"][service]["command"] == [f"parkdesk-{service}"]


def test_prometheus_and_grafana_are_wired_to_the_projects_monitoring(
    project: dict[str, Any],
) -> None:
    services = project["services"]
    mounted = {
        volume["source"]: volume["target"]
        for name in ("prometheus", "grafana")
        for volume in services[name]["volumes"]
        if volume["type"] == "bind"
    }
    assert (
        mounted[str(DEPLOY / "monitoring" / "prometheus.yml")] == "/etc/prometheus/prometheus.yml"
    )
    assert mounted[str(DEPLOY / "monitoring" / "alerts.yml")] == "/etc/prometheus/alerts.yml"
    assert (
        mounted[str(DEPLOY / "monitoring" / "grafana" / "dashboards")] == "/etc/grafana/dashboards"
    )
    assert [s["source"] for s in services["prometheus"]["secrets"]] == ["metrics_token"]
