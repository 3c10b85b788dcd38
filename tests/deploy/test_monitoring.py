"""deploy/monitoring: Prometheus's configuration and alert rules checked and unit-tested by
promtool, and the Grafana dashboard's queries parsed by promtool and read only metrics that the
services export."""

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import shared.metrics
from tests.deploy.conftest import DEPLOY, SETTINGS, Tools

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "parkdesk.json"
PROMETHEUS_OWN = {"up"}


SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def exported_series() -> set[str]:
    """Every series name the services expose: counters as _total, histograms as their parts."""
    metrics = [
        value for value in vars(shared.metrics).values() if isinstance(value, MetricWrapperBase)
    ]
    return {
        family.name + suffix
        for metric in metrics
        for family in metric.describe()
        for suffix in SERIES_SUFFIXES[family.type]
    }


def metric_names(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_labels))
    return {word for word in words if word.startswith("parkdesk_")} | (words & PROMETHEUS_OWN)


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']} ({target['refId']})": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }


def test_promtool_checks_the_alert_rules(tools: Tools) -> None:
    checked = tools.run("promtool", "check", "rules", str(MONITORING / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_when_it_should_and_not_otherwise(tools: Tools) -> None:
    """promtool runs alerts.test.yml: synthetic series for each alert, with the alerts expected
    at each moment, firing and quiet."""
    tested = tools.run("promtool", "test", "rules", "alerts.test.yml", cwd=MONITORING)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(
        re.findall(r"alertname: (\w+)", (MONITORING / "alerts.test.yml").read_text())
    )
    assert tested_alerts == set(alert_expressions())


def test_promtool_checks_the_prometheus_configuration(tools: Tools, tmp_path: Path) -> None:
    """The configuration as compose mounts it, with its files where the container has them."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    token = tmp_path / "metrics_token"
    token.write_text("a-scrape-token-for-the-check")
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    for job in config["scrape_configs"]:
        job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = tools.run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {job["job_name"] for job in config["scrape_configs"]} == set(SETTINGS)


def test_every_dashboard_query_parses(tools: Tools, tmp_path: Path) -> None:
    """Each panel's query as a recording rule, so that promtool parses it as PromQL."""
    queries = dashboard_expressions()
    assert len(queries) >= 10
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr}
                    for n, expr in enumerate(queries.values())
                ],
            }
        ]
    }
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump(rules))
    checked = tools.run("promtool", "check", "rules", str(tmp_path / "dashboard-queries.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("source", "expressions"),
    [("alerts", alert_expressions()), ("dashboard", dashboard_expressions())],
)
def test_queries_read_only_metrics_the_services_export(
    source: str, expressions: dict[str, str]
) -> None:
    exported = exported_series() | PROMETHEUS_OWN
    for name, expression in expressions.items():
        unknown = metric_names(expression) - exported
        assert not unknown, f"{source} {name!r} reads {unknown}, which nothing exports"


def test_the_dashboard_shows_what_supervisors_and_sres_watch() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    read = set().union(*(metric_names(expr) for expr in dashboard_expressions().values()))
    assert {
        "parkdesk_sla_events_total",
        "parkdesk_consumer_lag",
        "parkdesk_dead_letters_total",
        "parkdesk_notifications_total",
        "parkdesk_http_request_duration_seconds_bucket",
        "parkdesk_sla_open_clocks",
    } <= read
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["uid"] == "prometheus" for panel in dashboard["panels"]), (
        "every panel reads the provisioned data source"
    )
    provisioned = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert provisioned["datasources"][0]["uid"] == "prometheus"
