"""What an operator relies on: liveness and readiness, request ids and structured log lines.

Outages are caused for real: a redis-server of the test's own is stopped, the database is
pointed at a path that cannot be opened (in a child process, where Django starts with it),
the provider is misconfigured.
"""

import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from textwrap import dedent
from typing import Any

import pytest
import structlog

from core.logs import SHARED_PROCESSORS
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


class LogLines(io.StringIO):
    """Every log line written while the fixture is active, as parsed JSON objects."""

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["event"] == event]


@pytest.fixture
def json_logs() -> Iterator[LogLines]:
    """The root logger's lines rendered as the LOG_FORMAT=json formatter renders them."""
    lines = LogLines()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=SHARED_PROCESSORS,
        )
    )
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous_level)


# --- Liveness and readiness --------------------------------------------------------------


def test_healthz_answers_ok_and_is_never_cached(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_readyz_answers_ready_with_each_check_named(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "cache": "ok", "provider": "ok"}}
    assert response["Cache-Control"] == "no-store"


def test_readyz_answers_503_while_a_required_redis_cache_is_down_and_200_once_it_is_back(
    client, redis_process, settings
):
    settings.READINESS_CACHE_OPTIONAL = False
    assert client.get("/readyz").status_code == 200

    redis_process.stop()
    down = client.get("/readyz")
    redis_process.start()
    back = client.get("/readyz")

    assert down.status_code == 503
    assert down.json() == {
        "status": "not_ready",
        "checks": {"database": "ok", "cache": "unavailable", "provider": "ok"},
    }
    assert back.status_code == 200


def test_readyz_stays_ready_while_the_cache_is_down_by_default(client, redis_process):
    redis_process.stop()

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["cache"] == "optional_unavailable"


def test_readyz_answers_503_when_the_openai_provider_has_neither_key_nor_url(client, settings):
    settings.LLM_PROVIDER = "openai"

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["provider"] == "not_configured"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_a_head_probe_answers_like_get_without_a_body(client, path):
    """Load balancers probe with HEAD."""
    got = client.get(path)

    probed = client.head(path)

    assert probed.status_code == got.status_code == 200
    assert probed.content == b""
    assert probed["Content-Type"] == got["Content-Type"]
    assert probed["Cache-Control"] == "no-store"


def test_a_head_probe_of_readyz_answers_503_when_not_ready(client, settings):
    settings.LLM_PROVIDER = "openai"

    assert client.head("/readyz").status_code == 503


UNREACHABLE_DATABASE_SCRIPT = """
import json
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
client = Client()
answers = {}
for path, headers in [
    ("/healthz", {}),
    ("/readyz", {}),
    ("/api/v1/interactions/", {"HTTP_AUTHORIZATION": "Token " + "0" * 40, "HTTP_X_REQUEST_ID": "outage-42"}),
]:
    response = client.get(path, **headers)
    answers[path] = {"status": response.status_code, "body": response.json(), "request_id": response["X-Request-ID"]}
print(json.dumps(answers))
"""


def test_with_the_database_unreachable_healthz_lives_readyz_is_503_and_errors_name_the_request(tmp_path):
    env = {
        name: value
        for name, value in __import__("os").environ.items()
        if not name.startswith(("DJANGO_", "MONGODB_", "OPENAI_", "LLM_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="chatproject.settings",
        LLM_PROVIDER="offline",
        MONGODB_URI="",
        REDIS_URL="",
        LOG_LEVEL="CRITICAL",
        # The tests' key (pyproject.toml): without DEBUG the settings have none of their own.
        DJANGO_SECRET_KEY=__import__("os").environ["DJANGO_SECRET_KEY"],
        # A file in a directory that does not exist: SQLite cannot open it.
        DATABASE_URL=f"sqlite:///{tmp_path / 'missing-directory' / 'db.sqlite3'}",
    )
    completed = subprocess.run(
        [sys.executable, "-c", dedent(UNREACHABLE_DATABASE_SCRIPT)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    answers = json.loads(completed.stdout.strip().splitlines()[-1])

    assert answers["/healthz"]["status"] == 200
    assert answers["/readyz"]["status"] == 503
    assert answers["/readyz"]["body"]["checks"]["database"] == "unavailable"
    api = answers["/api/v1/interactions/"]
    assert api["status"] == 503
    assert api["body"]["error"]["code"] == "database_unavailable"
    assert api["body"]["error"]["details"] == {"request_id": "outage-42"}
    assert api["request_id"] == "outage-42"


# --- Request ids ---------------------------------------------------------------------------


def test_a_valid_request_id_from_the_client_is_echoed(api):
    response = api.get("/api/v1/interactions/", HTTP_X_REQUEST_ID="trace-0af7651916cd43dd")

    assert response["X-Request-ID"] == "trace-0af7651916cd43dd"


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 129, "evil\nid", "id with spaces", '"quoted"', "-leading-dash"],
    ids=["empty", "too-long", "newline", "spaces", "quotes", "leading-dash"],
)
def test_a_missing_or_invalid_request_id_is_replaced_by_a_generated_one(api, sent):
    response = api.get("/api/v1/interactions/", HTTP_X_REQUEST_ID=sent)

    assert response["X-Request-ID"] != sent
    assert uuid.UUID(response["X-Request-ID"])


def test_each_request_gets_its_own_generated_id(api):
    first = api.get("/api/v1/interactions/")["X-Request-ID"]
    second = api.get("/api/v1/interactions/")["X-Request-ID"]

    assert first != second


def test_a_failed_reply_names_the_request_in_the_error_details(api, interaction, fake_llm):
    fake_llm.then(status=500)

    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/",
        {"content": "hello"},
        format="json",
        HTTP_X_REQUEST_ID="req-502",
    )

    assert response.status_code == 502
    assert response.json()["error"]["details"]["request_id"] == "req-502"


def test_a_streamed_reply_that_fails_names_the_request_in_its_error_event(api, interaction, fake_llm):
    fake_llm.then(status=500)

    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true",
        {"content": "hello"},
        format="json",
        HTTP_X_REQUEST_ID="req-stream-502",
    )
    body = b"".join(response.streaming_content).decode()

    error = json.loads(body.split("event: error\ndata: ")[1].split("\n")[0])
    assert error["error"]["details"]["request_id"] == "req-stream-502"
    assert response["X-Request-ID"] == "req-stream-502"


# --- Log lines -------------------------------------------------------------------------------


def test_one_access_line_per_request_with_method_route_status_user_and_duration(api, user, json_logs):
    api.get("/api/v1/interactions/", HTTP_X_REQUEST_ID="req-list")

    (access,) = json_logs.events("request")
    assert access["request_id"] == "req-list"
    assert access["method"] == "GET"
    assert access["route"] == "interaction-list"
    assert access["status"] == 200
    assert access["user_id"] == str(user.pk)
    assert access["duration_ms"] >= 0
    assert access["streamed"] is False
    assert access["logger"] == "chat.access"
    assert access["level"] == "info"


def test_an_unknown_url_and_an_anonymous_request_are_logged_too(client, json_logs):
    client.get("/no/such/page", HTTP_X_REQUEST_ID="req-404")

    (access,) = json_logs.events("request")
    assert access == {**access, "route": "<unmatched>", "status": 404, "user_id": None, "request_id": "req-404"}


def test_every_line_of_a_streamed_reply_carries_the_request_id_even_after_the_middleware_returned(
    api, interaction, fake_llm, json_logs, user
):
    fake_llm.then(text="one two three")

    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true",
        {"content": "a secret question"},
        format="json",
        HTTP_X_REQUEST_ID="req-stream",
    )
    lines_before_the_stream = len(json_logs.records())
    b"".join(response.streaming_content)  # the test client closes the response at the end

    records = json_logs.records()
    assert len(records) > lines_before_the_stream, "nothing was logged while the reply streamed"
    assert {record.get("request_id") for record in records} == {"req-stream"}
    (provider_call,) = json_logs.events("provider_call")
    assert provider_call["user_id"] == str(user.pk)
    assert provider_call["interaction_id"] == str(interaction.pk)
    assert provider_call["status"] == "completed"
    assert provider_call["prompt_tokens"] == 11
    (access,) = json_logs.events("request")
    assert access["streamed"] is True
    assert access["stream_completed"] is True
    assert access["route"] == "message-list"
    # The access line of a stream is written when it ends: after the provider call.
    assert records.index(access) > records.index(provider_call)


def test_a_stream_the_client_abandons_is_still_logged_with_its_request_id(api, interaction, fake_llm, json_logs):
    fake_llm.then(text="one two three")

    response = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true",
        {"content": "go"},
        format="json",
        HTTP_X_REQUEST_ID="req-gone",
    )
    next(iter(response.streaming_content))
    response.close()  # the client hung up after the first event

    (provider_call,) = json_logs.events("provider_call")
    assert provider_call["request_id"] == "req-gone"
    (access,) = json_logs.events("request")
    assert access["request_id"] == "req-gone"
    assert access["stream_completed"] is False


def test_logs_hold_no_message_content_and_no_token(api, interaction, json_logs):
    token = api._credentials["HTTP_AUTHORIZATION"].split()[1]

    streamed = api.post(
        f"/api/v1/interactions/{interaction.pk}/messages/?stream=true",
        {"content": "my-private-words"},
        format="json",
    )
    b"".join(streamed.streaming_content)
    api.post(f"/api/v1/interactions/{interaction.pk}/messages/", {"content": "more-private-words"}, format="json")

    written = json_logs.getvalue()
    assert json_logs.events("provider_call")
    assert "private-words" not in written
    assert token not in written


def test_log_format_json_configures_a_json_renderer_and_console_a_key_value_one():
    from core.logs import logging_config

    json_config = logging_config(log_format="json", level="INFO")
    console_config = logging_config(log_format="console", level="INFO")

    assert type(json_config["formatters"]["structured"]["processors"][-1]).__name__ == "JSONRenderer"
    assert type(console_config["formatters"]["structured"]["processors"][-1]).__name__ == "ConsoleRenderer"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")
