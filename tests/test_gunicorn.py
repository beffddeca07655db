"""Streaming through a real gunicorn process (the production server), over real sockets."""

import http.client
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import gunicorn_serving, openai_env

pytestmark = pytest.mark.slow


@pytest.fixture
def gunicorn(fake_openai_server, subprocess_env) -> Iterator[tuple[int, str]]:
    fake_openai_server.reset()
    env = {**subprocess_env, **openai_env(fake_openai_server), "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    with gunicorn_serving(env, "--workers", "1", "--threads", "4", "--access-logfile", "/dev/null") as served:
        yield served.port, served.token


def request(port, token, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    return connection, connection.getresponse()


def read_events(response) -> Iterator[tuple[float, str, dict]]:
    """Yield (arrival time, event, data) as each event arrives on the socket."""
    event = None
    while True:
        line = response.readline()
        if not line:
            return
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            yield time.monotonic(), event, json.loads(line[len("data: ") :])


def new_interaction(port, token) -> str:
    connection, response = request(port, token, "POST", "/api/v1/interactions/", {"title": "g"})
    assert response.status == 201
    interaction_id = json.loads(response.read())["id"]
    connection.close()
    return interaction_id


def test_gunicorn_streams_each_delta_as_it_is_generated(gunicorn, fake_openai_server):
    port, token = gunicorn
    fake_openai_server.default.text = "one two three four five"
    fake_openai_server.default.chunk_delay_seconds = 0.3
    interaction_id = new_interaction(port, token)

    connection, response = request(
        port, token, "POST", f"/api/v1/interactions/{interaction_id}/messages/?stream=true", {"content": "go"}
    )
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    events = list(read_events(response))
    connection.close()

    names = [name for _, name, _ in events]
    assert names[:2] == ["message.created", "reply.created"]
    assert names[-1] == "reply.completed"
    first_delta_at = next(at for at, name, _ in events if name == "reply.delta")
    completed_at, _, final = events[-1]
    assert completed_at - first_delta_at > 0.8, "deltas were buffered instead of streamed"
    assert final["content"] == "one two three four five"


def test_a_client_that_hangs_up_under_gunicorn_still_gets_the_whole_reply_stored(gunicorn, fake_openai_server):
    port, token = gunicorn
    fake_openai_server.default.text = "the reply goes on after the client has gone"
    fake_openai_server.default.chunk_delay_seconds = 0.1
    interaction_id = new_interaction(port, token)

    connection, response = request(
        port, token, "POST", f"/api/v1/interactions/{interaction_id}/messages/?stream=true", {"content": "go"}
    )
    for _, name, _ in read_events(response):
        if name == "reply.delta":
            break
    connection.sock.close()
    connection.close()

    deadline = time.monotonic() + 15
    reply = None
    while time.monotonic() < deadline:
        listing_connection, listing = request(port, token, "GET", f"/api/v1/interactions/{interaction_id}/messages/")
        data = json.loads(listing.read())["data"]
        listing_connection.close()
        reply = data[1] if len(data) == 2 else None
        if reply and reply["status"] != "in_progress":
            break
        time.sleep(0.2)
    assert reply is not None
    assert reply["status"] == "completed"
    assert reply["content"] == "the reply goes on after the client has gone"


def test_two_user_messages_at_once_under_gunicorn_generate_one_reply_at_a_time(gunicorn, fake_openai_server):
    port, token = gunicorn
    fake_openai_server.default.delay_seconds = 1.0
    interaction_id = new_interaction(port, token)
    statuses: list[int] = []
    start = threading.Barrier(2, timeout=10)

    def send(text: str) -> None:
        start.wait()
        connection, response = request(
            port, token, "POST", f"/api/v1/interactions/{interaction_id}/messages/", {"content": text}
        )
        statuses.append(response.status)
        response.read()
        connection.close()

    threads = [threading.Thread(target=send, args=(text,)) for text in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 409]
    assert fake_openai_server.max_in_flight == 1
    connection, listing = request(port, token, "GET", f"/api/v1/interactions/{interaction_id}/messages/")
    assert [m["role"] for m in json.loads(listing.read())["data"]] == ["user", "assistant"]
    connection.close()


def test_the_user_message_and_an_in_progress_reply_are_stored_before_the_model_answers(gunicorn, fake_openai_server):
    port, token = gunicorn
    fake_openai_server.default.delay_seconds = 1.5
    interaction_id = new_interaction(port, token)
    posted: list[int] = []

    def send() -> None:
        connection, response = request(
            port, token, "POST", f"/api/v1/interactions/{interaction_id}/messages/", {"content": "slow one"}
        )
        posted.append(response.status)
        connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 5
    while not fake_openai_server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    connection, listing = request(port, token, "GET", f"/api/v1/interactions/{interaction_id}/messages/")
    during = json.loads(listing.read())["data"]
    connection.close()
    sender.join()

    assert [(m["role"], m["status"]) for m in during] == [("user", "completed"), ("assistant", "in_progress")]
    assert during[0]["content"] == "slow one"
    assert posted == [201]


@pytest.mark.parametrize(("proxy_count", "scheme"), [("0", "http"), ("1", "https")])
def test_x_forwarded_proto_is_believed_only_with_trusted_proxies(subprocess_env, proxy_count, scheme):
    """With DJANGO_TRUSTED_PROXY_COUNT=0 any client could claim HTTPS, even on loopback, where
    gunicorn itself trusts the header unless told not to."""
    env = {**subprocess_env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_TRUSTED_PROXY_COUNT": proxy_count}
    with gunicorn_serving(env, "--workers", "1") as served:
        interaction_id = new_interaction(served.port, served.token)
        path = f"/api/v1/interactions/{interaction_id}/messages/"
        connection, response = request(served.port, served.token, "POST", path, {"content": "hi"})
        reply_id = json.loads(response.read())["reply"]["id"]
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
        connection.request(
            "POST",
            f"{path}{reply_id}/stream-ticket/",
            headers={"Authorization": f"Token {served.token}", "X-Forwarded-Proto": "https"},
        )
        ticket = connection.getresponse()
        body = json.loads(ticket.read())
        connection.close()

    assert ticket.status == 200, body
    assert body["stream_url"].startswith(f"{scheme}://127.0.0.1:{served.port}/")
