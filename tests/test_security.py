"""Closed doors: login lockouts, the client address behind proxies, /metrics, CORS, CSP, the secret key."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.conftest import ROOT
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
TOKEN_URL = "/api/v1/auth/token/"


def throttle_rates(monkeypatch, **rates: str) -> None:  # type: ignore[no-untyped-def]
    # DRF's throttles read their rates once, at import: patch where they read them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **rates})


@pytest.fixture(autouse=True)
def lockout_settings(settings, monkeypatch):  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 5
    # The token exchange's own per-address rate limit is not what these tests are about.
    throttle_rates(monkeypatch, anon="1000/minute")
    return settings


def exchange(client, username, password, **extra):  # type: ignore[no-untyped-def]
    return client.post(
        TOKEN_URL, json.dumps({"username": username, "password": password}), content_type="application/json", **extra
    )


# --- Failed logins are locked out (django-axes) ----------------------------------------


def test_after_five_wrong_passwords_the_token_exchange_is_locked_out_in_the_envelope_even_with_the_right_one():
    UserFactory(username="alice")
    client = APIClient()

    statuses = [exchange(client, "alice", f"wrong {n}").status_code for n in range(5)]
    locked = exchange(client, "alice", PASSWORD)

    assert statuses == [400] * 4 + [429]
    assert locked.status_code == 429
    assert locked["Retry-After"] == "900"
    error = locked.json()["error"]
    assert error["code"] == "locked_out"
    assert error["type"] == "rate_limit_error"
    assert "token" not in locked.json()


def test_a_lockout_is_per_username_and_address():
    UserFactory(username="alice")
    UserFactory(username="bob")
    attacker = APIClient(REMOTE_ADDR="203.0.113.9")
    for n in range(5):
        exchange(attacker, "alice", f"wrong {n}")

    assert exchange(attacker, "bob", PASSWORD).status_code == 200
    assert exchange(APIClient(REMOTE_ADDR="198.51.100.7"), "alice", PASSWORD).status_code == 200
    assert exchange(attacker, "alice", PASSWORD).status_code == 429


def test_the_admin_login_is_locked_out_after_five_wrong_passwords_and_staff_can_unlock_it(admin_client):
    User.objects.create_user(username="staffer", password=PASSWORD, is_staff=True)
    browser = Client()
    for n in range(5):
        browser.post("/admin/login/", {"username": "staffer", "password": f"wrong {n}"})

    refused = browser.post("/admin/login/", {"username": "staffer", "password": PASSWORD})
    assert refused.status_code == 429
    assert "_auth_user_id" not in browser.session

    attempt = AccessAttempt.objects.get(username="staffer")
    page = admin_client.get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    assert b"staffer" in page.content
    unlocked = admin_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert unlocked.status_code == 302
    assert not AccessAttempt.objects.exists()

    logged_in = browser.post("/admin/login/", {"username": "staffer", "password": PASSWORD})
    assert logged_in.status_code == 302
    assert browser.session["_auth_user_id"]


@pytest.mark.parametrize(
    "path", ["/admin/axes/accessattempt/", "/admin/axes/accesslog/", "/admin/axes/accessfailurelog/"]
)
def test_the_lockout_admin_pages_render_without_a_date_hierarchy(admin_client, path):
    response = admin_client.get(path)

    assert response.status_code == 200
    assert b"xfull" not in response.content  # the date hierarchy's navigation


# --- Where the client address comes from -----------------------------------------------


def test_without_trusted_proxies_x_forwarded_for_cannot_dodge_a_lockout():
    UserFactory(username="alice")
    client = APIClient(REMOTE_ADDR="203.0.113.9")
    for n in range(5):
        exchange(client, "alice", f"wrong {n}", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    assert exchange(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_behind_one_trusted_proxy_the_address_it_forwards_is_the_client(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    UserFactory(username="alice")
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")
    for n in range(5):
        # A client may prepend anything; the proxy appends the address it saw last.
        exchange(proxy, "alice", f"wrong {n}", HTTP_X_FORWARDED_FOR=f"6.6.6.{n}, 203.0.113.9")

    assert exchange(proxy, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    assert exchange(proxy, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 200


def test_drf_throttles_count_the_same_client_address_as_the_lockouts(settings, monkeypatch):
    settings.TRUSTED_PROXY_COUNT = 1
    throttle_rates(monkeypatch, anon="2/minute")
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")

    first = [exchange(proxy, "nobody", "x", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code for _ in range(3)]
    other = exchange(proxy, "nobody", "x", HTTP_X_FORWARDED_FOR="198.51.100.7").status_code
    spoofed = exchange(proxy, "nobody", "x", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9").status_code

    assert first == [400, 400, 429]
    assert other == 400
    assert spoofed == 429


# --- /metrics --------------------------------------------------------------------------


def test_metrics_refuse_an_address_outside_the_allow_list_without_a_token(settings):
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape-token"
    outsider = Client(REMOTE_ADDR="203.0.113.9")

    refused = outsider.get("/metrics")
    wrong = outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer guessed")
    allowed = outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")

    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"]["code"] == "metrics_unauthorized"
    assert b"chat_" not in refused.content + wrong.content
    assert allowed.status_code == 200
    assert b"django_http_requests" in allowed.content


def test_metrics_answer_an_allowed_network_and_nobody_else_when_no_token_is_set(settings):
    settings.METRICS_BEARER_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 200


# --- CORS ------------------------------------------------------------------------------


def test_cors_is_off_by_default(api):
    response = api.get("/api/v1/interactions/", HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


def test_an_allowed_origin_may_call_the_api_with_an_idempotency_key(settings, api):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    preflight = Client().options(
        "/api/v1/interactions/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )
    actual = api.get("/api/v1/interactions/", HTTP_ORIGIN="https://app.example.com")
    other = api.get("/api/v1/interactions/", HTTP_ORIGIN="https://evil.example")

    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "idempotency-key" in preflight["Access-Control-Allow-Headers"]
    assert actual["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in other


def test_an_error_answered_before_the_view_still_carries_cors_headers(settings, api):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    response = api.get("/api/v1/interactions/?after=" + "a" * 300, HTTP_ORIGIN="https://app.example.com")

    assert response.status_code == 400
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"


# --- Content-Security-Policy -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/", "/api/redoc/"])
def test_admin_and_docs_pages_carry_a_content_security_policy_with_nothing_from_elsewhere(client, path):
    response = client.get(path)

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'"
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    assert "http" not in policy


# --- The secret key --------------------------------------------------------------------


def child_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OPENAI_", "LLM_", "MONGODB_"))}
    return {**env, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "chatproject.settings", **variables}


@pytest.mark.parametrize(
    "key",
    ["", "django-insecure-local-development-key-do-not-use-in-production-0123456789"],
    ids=["no-key", "built-in-key"],
)
def test_without_debug_the_server_refuses_to_start_without_a_real_secret_key(tmp_path: Path, key: str):
    started = subprocess.run(
        [sys.executable, "-c", "import chatproject.wsgi"],
        env=child_env(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    checked = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy"],
        env=child_env(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert started.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in started.stderr
    assert "secrets.token_urlsafe(50)" in started.stderr
    assert checked.returncode != 0
    assert "core.E001" in checked.stderr + checked.stdout


def test_with_debug_the_built_in_key_is_used_and_tools_run_without_any_key(tmp_path: Path):
    debug = subprocess.run(
        [sys.executable, "-c", "import chatproject.wsgi; from django.conf import settings; print(settings.SECRET_KEY)"],
        env=child_env(DJANGO_DEBUG="true", DJANGO_SECRET_KEY=""),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    makemigrations = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "makemigrations", "--check", "--dry-run"],
        env=child_env(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=""),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert debug.returncode == 0, debug.stderr
    assert debug.stdout.startswith("django-insecure-local-development-key")
    assert makemigrations.returncode == 0, makemigrations.stderr


def test_scripts_run_writes_a_generated_key_to_env_once_and_keeps_it(tmp_path: Path):
    copy = tmp_path / "checkout"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "ensure-secret-key", copy / "scripts" / "ensure-secret-key")
    (copy / ".env").write_text("LOG_LEVEL=INFO")  # No newline at the end.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}

    for _ in range(2):
        subprocess.run([copy / "scripts" / "ensure-secret-key"], env=env, cwd=copy, check=True, capture_output=True)

    lines = (copy / ".env").read_text().splitlines()
    keys = [line for line in lines if line.startswith("DJANGO_SECRET_KEY=")]
    assert lines[0] == "LOG_LEVEL=INFO"
    assert len(keys) == 1
    assert len(keys[0].partition("=")[2]) >= 50


def test_compose_gives_prometheus_the_token_the_app_expects():
    compose = (ROOT / "docker-compose.yml").read_text()
    scrape = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    token_file = ROOT / "deploy" / "prometheus" / "metrics-token"

    assert "credentials_file: metrics-token" in scrape
    assert f'METRICS_BEARER_TOKEN: "${{METRICS_BEARER_TOKEN:-{token_file.read_text().strip()}}}"' in compose


def test_a_login_without_a_request_still_checks_the_password():
    UserFactory(username="alice")
    client = Client()

    assert client.login(username="alice", password="wrong") is False
    assert client.login(username="alice", password=PASSWORD) is True


def test_posting_messages_has_a_stricter_per_user_limit_than_reading(monkeypatch, api, other_api, user, other_user):
    from tests.factories import InteractionFactory

    throttle_rates(monkeypatch, message_post="2/minute")
    mine = InteractionFactory(owner=user)
    theirs = InteractionFactory(owner=other_user)
    url = f"/api/v1/interactions/{mine.pk}/messages/"

    posted = [api.post(url, {"content": f"m{n}", "role": "system"}, format="json").status_code for n in range(3)]
    listed = api.get(url)
    someone_else = other_api.post(
        f"/api/v1/interactions/{theirs.pk}/messages/", {"content": "hi", "role": "system"}, format="json"
    )

    assert posted == [201, 201, 429]
    assert listed.status_code == 200
    assert someone_else.status_code == 201
