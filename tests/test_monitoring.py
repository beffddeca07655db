"""The monitoring profile's files: Prometheus config and alert rules (checked and unit-tested by
promtool, Debian package `prometheus`), and a Grafana dashboard; every metric they name is one
that a live /metrics of this service exports."""

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from tests.conftest import ROOT
from tests.factories import InteractionFactory

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "chat-backend.json"
# Series Prometheus makes itself, not the service.
SYNTHETIC_SERIES = {"up"}
METRIC_BEFORE_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[\{\[]")


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run scripts/install-system-deps (Debian package prometheus)")
    return subprocess.run([binary, *arguments], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expression: str) -> set[str]:
    return set(METRIC_BEFORE_SELECTOR.findall(expression)) - SYNTHETIC_SERIES


def test_promtool_accepts_the_prometheus_config_and_its_rules():
    checked = promtool("check", "config", "prometheus.yml")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout + checked.stderr


def test_promtool_unit_tests_of_the_alert_rules_pass():
    tested = promtool("test", "rules", "alerts_test.yml")

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_in_which_it_fires_and_one_in_which_it_does_not():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]

    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown quiet"


def test_the_alerts_cover_failures_latency_server_errors_and_a_missing_scrape():
    expressions = {rule["alert"]: rule["expr"] for rule in alert_rules()}

    assert "chat_llm_replies_total" in expressions["ChatReplyFailureRatioHigh"]
    assert " ".join(expressions["ChatRequestLatencyP99High"].split()).startswith("histogram_quantile( 0.99,")
    assert 'status=~"5.."' in expressions["Chat5xxRatioHigh"]
    assert "absent(up" in expressions["ChatScrapeMissing"]


def test_the_dashboard_charts_what_an_operator_needs():
    names = set().union(*(metric_names(expression) for expression in dashboard_expressions()))

    assert {
        "django_http_requests_total_by_view_transport_method_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
        "django_http_responses_total_by_status_total",
        "chat_llm_replies_total",
        "chat_llm_time_to_first_token_seconds_bucket",
        "chat_llm_tokens_total",
        "chat_cache_errors_total",
    } <= names


def test_compose_loads_the_rules_and_provisions_grafana():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]

    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/chat-backend.yml").read_text())
    mounted = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"] if volume.startswith("./"))
    assert mounted["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]


@pytest.mark.django_db(transaction=True)
def test_every_metric_named_by_the_rules_and_the_dashboard_is_exported_by_a_live_service(
    live_server, user, redis_process, settings
):
    """Traffic of every kind first (a streamed reply, a cache outage), then one scrape."""
    from tests.conftest import client_for

    api = client_for(user)
    interaction = InteractionFactory(owner=user)
    streamed = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true", {"content": "hello"}, format="json"
    )
    b"".join(streamed.streaming_content)
    api.get(f"/api/v1/interactions/{interaction.pk}/")
    redis_process.stop()
    api.get(f"/api/v1/interactions/{interaction.pk}/")  # the cache is down: an error is counted
    urllib.request.urlopen(f"{live_server.url}/healthz", timeout=10).read()  # noqa: S310 (http)

    exported = urllib.request.urlopen(f"{live_server.url}/metrics", timeout=10).read().decode()  # noqa: S310

    sample_names = {line.split("{")[0].split(" ")[0] for line in exported.splitlines() if not line.startswith("#")}
    named = set()
    for expression in [rule["expr"] for rule in alert_rules()] + dashboard_expressions():
        named |= metric_names(expression)
    assert named, "no metric names found in the rules and dashboard"
    assert named - sample_names == set(), "named in deploy/ but not exported"
