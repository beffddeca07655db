"""Request ids under real concurrency: gunicorn (its configured worker class) serving
overlapping streamed replies, its JSON log lines read back from its stderr.

Each request's context lives in contextvars (per thread under gthread, per greenlet under
gevent); lines written while one stream is being sent must never carry another's id.
"""

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gunicorn_serving, openai_env
from tests.fake_openai import Behaviour
from tests.test_gunicorn import new_interaction, read_events

pytestmark = pytest.mark.slow

CONCURRENT_STREAMS = 6


@pytest.fixture(params=["chatproject.gunicorn_worker.GeventWorker", "gthread"], ids=["gevent", "gthread"])
def logged_gunicorn(request, fake_openai_server, subprocess_env, tmp_path) -> Iterator[tuple[int, str, Path]]:
    """gunicorn with each worker class: contextvars are per greenlet under gevent, per thread under gthread."""
    fake_openai_server.reset()
    env = {
        **subprocess_env,
        **openai_env(fake_openai_server),
        "GUNICORN_WORKER_CLASS": request.param,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "gunicorn.log"
    with (
        log_path.open("wb") as log,
        gunicorn_serving(env, "--workers", "1", "--threads", str(CONCURRENT_STREAMS + 2), output=log) as served,
    ):
        yield served.port, served.token, log_path


def request(port, token, method, path, body, *, request_id):  # type: ignore[no-untyped-def]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", "X-Request-ID": request_id}
    connection.request(method, path, body=json.dumps(body), headers=headers)
    return connection, connection.getresponse()


def stream_access_lines(lines: list[dict]) -> list[dict]:
    return [
        line for line in lines if line["event"] == "request" and line["route"] == "message-list" and line["streamed"]
    ]


def json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_overlapping_streams_under_gunicorn_each_log_only_their_own_request_id(logged_gunicorn, fake_openai_server):
    """Also: the access lines are the application's only (gunicorn's own access log is off)."""
    port, token, log_path = logged_gunicorn
    # Slow streams, so that every request is being sent while the others are.
    fake_openai_server.default = Behaviour(text="one two three four five", chunk_delay_seconds=0.15)
    interactions = [new_interaction(port, token) for _ in range(CONCURRENT_STREAMS)]
    echoed: dict[str, str] = {}
    overlap = threading.Barrier(CONCURRENT_STREAMS)

    def stream(index: int) -> None:
        request_id = f"concurrent-{index}"
        overlap.wait(timeout=20)
        connection, response = request(
            port,
            token,
            "POST",
            f"/api/v1/interactions/{interactions[index]}/messages/?stream=true",
            {"content": f"question {index}"},
            request_id=request_id,
        )
        echoed[request_id] = response.getheader("X-Request-ID")
        events = [event for _, event, _ in read_events(response)]
        assert events[-1] == "reply.completed"
        connection.close()

    threads = [threading.Thread(target=stream, args=(index,)) for index in range(CONCURRENT_STREAMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert echoed == {f"concurrent-{index}": f"concurrent-{index}" for index in range(CONCURRENT_STREAMS)}
    assert fake_openai_server.max_in_flight > 1, "the streams did not overlap"
    # A stream's access line is written when the server closes the response, just after the
    # client has read the last event.
    deadline = time.monotonic() + 10
    while len(stream_access_lines(json_lines(log_path))) < CONCURRENT_STREAMS and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = json_lines(log_path)
    provider_calls = {line["interaction_id"]: line["request_id"] for line in lines if line["event"] == "provider_call"}
    assert provider_calls == {interactions[index]: f"concurrent-{index}" for index in range(CONCURRENT_STREAMS)}
    stream_access = stream_access_lines(lines)
    assert sorted(line["request_id"] for line in stream_access) == sorted(echoed)
    assert all(line["status"] == 200 and line["stream_completed"] for line in stream_access)
    text_lines = [line for line in log_path.read_text().splitlines() if "/api/v1/" in line and not line.startswith("{")]
    assert text_lines == [], "a second, unstructured access line"
