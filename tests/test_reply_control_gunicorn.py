"""Following, resuming and cancelling replies through real gunicorn instances.

Two gunicorn instances on different ports share one SQLite database (and, in the `redis`
runs, one real redis-server), and talk to the loopback model server, which streams slowly
or stalls before its first token. What one instance starts, the other follows or stops.
"""

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from tests.conftest import ROOT, RedisProcess, free_port, wait_for_port
from tests.fake_openai import FakeOpenAIServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sqlite_only(reason="two instances share one SQLite file, and the tests read the claim's pid from it"),
]

WORDS = " ".join(f"word{i}" for i in range(30))


@dataclass
class Event:
    event: str
    data: Any
    id: str | None


@dataclass
class Stream:
    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    comments: list[str] = field(default_factory=list)
    retry: str | None = None

    def events(self) -> Iterator[Event]:
        """Yield each event as it arrives on the socket."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if not text:
                if "data" in fields:
                    yield Event(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"))
                elif "retry" in fields:
                    self.retry = fields["retry"]
                fields = {}
            elif text.startswith(":"):
                self.comments.append(text)
            else:
                name, _, value = text.partition(": ")
                fields[name] = value

    def rest(self) -> list[Event]:
        return list(self.events())

    def hang_up(self) -> None:
        if self.connection.sock is not None:
            self.connection.sock.close()
        self.connection.close()


@dataclass
class Service:
    ports: list[int]
    token: str
    database: Path
    masters: list[subprocess.Popen[bytes]]
    redis_url: str

    def request(self, port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        all_headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=all_headers)
        return connection, connection.getresponse()

    def call(self, port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection, response = self.request(port, method, path, body)
        data = response.read()
        connection.close()
        return response.status, json.loads(data) if data else None

    def new_interaction(self) -> str:
        status, body = self.call(self.ports[0], "POST", "/api/v1/interactions/", {"title": "follow"})
        assert status == 201
        return str(body["id"])

    def post_stream(self, port: int, interaction_id: str, content: str = "go") -> Stream:
        connection, response = self.request(
            port, "POST", f"/api/v1/interactions/{interaction_id}/messages/?stream=true", {"content": content}
        )
        assert response.status == 200
        return Stream(connection, response)

    def attach(self, port: int, interaction_id: str, reply_id: str, last_event_id: str | None = None) -> Stream:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        connection, response = self.request(
            port, "GET", f"/api/v1/interactions/{interaction_id}/messages/{reply_id}/stream/", headers=headers
        )
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type") == "text/event-stream"
        return Stream(connection, response)

    def cancel(self, port: int, interaction_id: str, reply_id: str) -> tuple[int, Any]:
        return self.call(port, "POST", f"/api/v1/interactions/{interaction_id}/messages/{reply_id}/cancel/")

    def reply(self, interaction_id: str, reply_id: str) -> dict[str, Any]:
        status, body = self.call(self.ports[1], "GET", f"/api/v1/interactions/{interaction_id}/messages/{reply_id}/")
        assert status == 200
        return body  # type: ignore[no-any-return]

    def stored_reply_id(self, interaction_id: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _status, body = self.call(self.ports[1], "GET", f"/api/v1/interactions/{interaction_id}/messages/")
            replies = [m for m in body["data"] if m["role"] == "assistant"]
            if replies:
                return str(replies[-1]["id"])
            time.sleep(0.05)
        raise TimeoutError("no reply was stored")

    def claim_pid(self, interaction_id: str) -> int:
        with sqlite3.connect(self.database) as db:
            (pid,) = db.execute(
                "SELECT reply_claim_pid FROM interactions_interaction WHERE id = ?", (interaction_id.replace("-", ""),)
            ).fetchone()
        return int(pid)


def service_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            # The tests' key (pyproject.toml): without DEBUG the settings have no key of their own.
            "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        }
    )
    return env


def post_message(service: Service, interaction_id: str) -> tuple[int, Any]:
    return service.call(service.ports[0], "POST", f"/api/v1/interactions/{interaction_id}/messages/", {"content": "x"})


def start_service(tmp_path: Path, env: dict[str, str], fake: FakeOpenAIServer, redis_url: str) -> Service:
    env = {
        **env,
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake.base_url,
        "LLM_TIMEOUT_SECONDS": "30",
        "LLM_MAX_RETRIES": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "REDIS_URL": redis_url,
        "REPLY_STREAM_POLL_SECONDS": "0.2",
        "REPLY_STREAM_HEARTBEAT_SECONDS": "1",
        "API_THROTTLE_RATE": "10000/minute",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    created = subprocess.run(
        [*manage, "demo_user"], env=env, check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout
    token = next(line.split()[-1] for line in created.splitlines() if line.startswith("token:"))
    ports = [free_port(), free_port()]
    masters = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"),
                *("--workers", "2", "--access-logfile", "/dev/null", "chatproject.wsgi:application"),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            wait_for_port(port, timeout=30)
            wait_for_health(port)
    except BaseException:
        for master in masters:
            master.terminate()
            master.wait(timeout=60)
        raise
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    return Service(ports=ports, token=token, database=database, masters=masters, redis_url=redis_url)


def wait_for_health(port: int, timeout: float = 90) -> None:
    """Wait until a worker answers (on a loaded machine booting one can take a while)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            connection.close()
    raise TimeoutError(f"no worker answered on port {port}")


def stop_service(service: Service) -> None:
    for master in service.masters:
        master.terminate()
    for master in service.masters:
        master.wait(timeout=30)


@pytest.fixture(scope="module", params=["database", "redis"])
def service(request, fake_openai_server, tmp_path_factory) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    tmp_path = tmp_path_factory.mktemp(f"follow-{request.param}")
    env = service_env(tmp_path)
    redis = RedisProcess().start() if request.param == "redis" else None
    started = start_service(tmp_path, env, fake_openai_server, redis.url if redis else "")
    yield started
    stop_service(started)
    if redis is not None:
        redis.cleanup()


@pytest.fixture
def model(fake_openai_server) -> FakeOpenAIServer:  # type: ignore[no-untyped-def]
    fake_openai_server.reset()
    return fake_openai_server


def deltas(events: list[Event]) -> str:
    return "".join(event.data["delta"] for event in events if event.event == "reply.delta")


def read_until_deltas(stream: Stream, count: int) -> list[Event]:
    seen: list[Event] = []
    for event in stream.events():
        seen.append(event)
        if sum(1 for e in seen if e.event == "reply.delta") >= count:
            return seen
    raise AssertionError(f"the stream ended after {seen}")


def wait_for_model_request(model: FakeOpenAIServer, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not model.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.requests, "the model server got no request"


def test_a_client_that_hangs_up_resumes_on_another_instance_with_exactly_the_rest(service, model):
    model.default.text = WORDS
    model.default.chunk_delay_seconds = 0.1
    interaction_id = service.new_interaction()

    original = service.post_stream(service.ports[0], interaction_id)
    first = read_until_deltas(original, 4)
    original.hang_up()
    reply_id = next(e.data["id"] for e in first if e.event == "reply.created")
    assert all(e.id for e in first), "every event carries an id"

    resumed = service.attach(service.ports[1], interaction_id, reply_id, last_event_id=first[-1].id)
    rest = resumed.rest()

    assert [e.event for e in rest if e.event != "reply.delta"] == ["reply.completed"]
    assert deltas(first) + deltas(rest) == WORDS == service.reply(interaction_id, reply_id)["content"]
    assert rest[-1].data["status"] == "completed"
    assert resumed.retry is not None
    if service.redis_url:
        client = redis_client.Redis.from_url(service.redis_url)
        (key,) = client.keys(f"chat:reply-relay:{reply_id}:*")
        relayed = client.xrange(key)
        assert "".join(fields[b"d"].decode() for _, fields in relayed) == WORDS
        assert 0 < client.ttl(key) <= 900


def test_attaching_to_a_finished_reply_sends_it_whole_at_once(service, model):
    model.default.text = "short and done"
    interaction_id = service.new_interaction()
    service.post_stream(service.ports[0], interaction_id).rest()
    reply_id = service.stored_reply_id(interaction_id)

    events = service.attach(service.ports[1], interaction_id, reply_id).rest()

    assert [e.event for e in events] == ["reply.created", "reply.delta", "reply.completed"]
    assert events[0].data["content"] == ""
    assert deltas(events) == "short and done"
    # Resuming from its last event id: nothing more than the terminal event.
    again = service.attach(service.ports[0], interaction_id, reply_id, last_event_id=events[-1].id).rest()
    assert [e.event for e in again] == ["reply.completed"]


def test_two_followers_on_two_instances_receive_the_whole_reply(service, model):
    model.default.text = WORDS
    model.default.chunk_delay_seconds = 0.1
    interaction_id = service.new_interaction()
    original = service.post_stream(service.ports[0], interaction_id)
    head = read_until_deltas(original, 1)
    reply_id = next(e.data["id"] for e in head if e.event == "reply.created")
    rest: list[Event] = []
    poster = threading.Thread(target=lambda: rest.extend(original.rest()))
    poster.start()

    followers = [service.attach(port, interaction_id, reply_id) for port in service.ports]
    results = [follower.rest() for follower in followers]
    poster.join()

    assert deltas(head) + deltas(rest) == WORDS
    for events in results:
        assert events[0].event == "reply.created"
        assert events[-1].event == "reply.completed"
        assert deltas(events) == WORDS
        assert len([e for e in events if e.event == "reply.delta"]) > 1, "the text should arrive as it is generated"
        offsets = [int(str(e.id).split(".")[1]) for e in events]
        assert offsets == sorted(offsets)
        assert offsets[-1] == len(WORDS)


def test_a_cancel_on_another_instance_stops_a_streaming_reply_within_a_second(service, model):
    model.default.text = WORDS
    model.default.chunk_delay_seconds = 0.2
    interaction_id = service.new_interaction()
    original = service.post_stream(service.ports[0], interaction_id)
    before = read_until_deltas(original, 2)
    reply_id = next(e.data["id"] for e in before if e.event == "reply.created")
    follower = service.attach(service.ports[1], interaction_id, reply_id)

    cancelled_at = time.monotonic()
    status, body = service.cancel(service.ports[1], interaction_id, reply_id)
    after = original.rest()
    followed = follower.rest()

    assert status == 200
    assert body["status"] == "incomplete"
    assert body["error"]["code"] == "cancelled"
    hangup = model.wait_for_hangup()
    assert hangup is not None, "the model server kept its connection"
    assert hangup - cancelled_at < 1.0
    assert after[-1].event == "reply.cancelled"
    assert followed[-1].event == "reply.cancelled"
    stored = service.reply(interaction_id, reply_id)
    assert stored["status"] == "incomplete"
    assert stored["content"] == deltas(before) + deltas(after) == deltas(followed)
    assert len(stored["content"]) < len(WORDS)
    # The slot is free and the reply can be retried.
    model.default.chunk_delay_seconds = 0
    status, retried = service.call(
        service.ports[0], "POST", f"/api/v1/interactions/{interaction_id}/messages/{reply_id}/retry/"
    )
    assert status == 200
    assert retried["content"] == WORDS


def test_a_cancel_while_the_model_stalls_answers_the_waiting_post_with_the_incomplete_reply(service, model):
    model.default.delay_seconds = 30
    interaction_id = service.new_interaction()
    answer: list[tuple[int, Any]] = []
    poster = threading.Thread(target=lambda: answer.append(post_message(service, interaction_id)))
    poster.start()
    wait_for_model_request(model)
    reply_id = service.stored_reply_id(interaction_id)

    cancelled_at = time.monotonic()
    status, _body = service.cancel(service.ports[1], interaction_id, reply_id)
    poster.join(timeout=10)

    assert status == 200
    hangup = model.wait_for_hangup()
    assert hangup is not None
    assert hangup - cancelled_at < 1.0
    ((posted_status, posted),) = answer
    assert posted_status == 201
    assert posted["reply"]["status"] == "incomplete"
    assert posted["reply"]["content"] == ""
    assert posted["reply"]["error"]["code"] == "cancelled"


def test_a_cancel_while_a_stream_stalls_before_its_first_token_ends_the_stream(service, model):
    model.default.stall_before_first_token_seconds = 30
    interaction_id = service.new_interaction()
    original = service.post_stream(service.ports[0], interaction_id)
    head = [next(original.events()), next(original.events())]
    reply_id = head[1].data["id"]
    wait_for_model_request(model)

    cancelled_at = time.monotonic()
    status, _ = service.cancel(service.ports[1], interaction_id, reply_id)
    rest = original.rest()

    assert status == 200
    hangup = model.wait_for_hangup()
    assert hangup is not None
    assert hangup - cancelled_at < 1.0
    assert [e.event for e in rest] == ["reply.cancelled"]
    assert rest[0].data["status"] == "incomplete"


def test_cancelling_a_finished_reply_is_a_conflict_naming_its_status(service, model):
    interaction_id = service.new_interaction()
    service.post_stream(service.ports[0], interaction_id).rest()
    reply_id = service.stored_reply_id(interaction_id)

    status, body = service.cancel(service.ports[1], interaction_id, reply_id)

    assert status == 409
    assert body["error"]["code"] == "reply_not_in_progress"
    assert body["error"]["details"]["status"] == "completed"


def test_a_follower_of_a_reply_whose_worker_is_killed_gets_the_abandoned_error(service, model):
    model.default.text = WORDS
    model.default.chunk_delay_seconds = 0.3
    interaction_id = service.new_interaction()
    original = service.post_stream(service.ports[0], interaction_id)
    head = read_until_deltas(original, 1)
    reply_id = next(e.data["id"] for e in head if e.event == "reply.created")
    follower = service.attach(service.ports[1], interaction_id, reply_id)
    read_until_deltas(follower, 1)

    os.kill(service.claim_pid(interaction_id), signal.SIGKILL)
    events = follower.rest()

    assert events[-1].event == "error"
    assert events[-1].data["error"]["code"] == "reply_abandoned"
    stored = service.reply(interaction_id, reply_id)
    # What had arrived is kept: with text the reply is incomplete, without any it failed; both retryable.
    assert WORDS.startswith(stored["content"])
    assert stored["status"] == ("incomplete" if stored["content"] else "failed")


def test_redis_stopped_mid_reply_followers_fall_back_and_the_reply_is_not_slowed(fake_openai_server, tmp_path):
    model = fake_openai_server
    model.reset()
    model.default.text = WORDS
    model.default.chunk_delay_seconds = 0.1
    redis = RedisProcess().start()
    env = service_env(tmp_path)
    service = start_service(tmp_path, env, model, redis.url)
    try:
        interaction_id = service.new_interaction()
        original = service.post_stream(service.ports[0], interaction_id)
        head = read_until_deltas(original, 1)
        reply_id = next(e.data["id"] for e in head if e.event == "reply.created")
        follower = service.attach(service.ports[1], interaction_id, reply_id)
        followed = read_until_deltas(follower, 2)

        redis.stop()
        rest = original.rest()
        followed += follower.rest()

        stored = service.reply(interaction_id, reply_id)
        assert stored["status"] == "completed"
        assert deltas(head) + deltas(rest) == WORDS
        assert deltas(followed) == WORDS, "the follower fell back to the stored progress without a gap"
        assert followed[-1].event == "reply.completed"
        model_seconds = 30 * 0.1
        # The generating worker's reply took the model's time, not the relay's timeouts on top.
        assert stored["latency_ms"] / 1000 < model_seconds + 1.5
    finally:
        stop_service(service)
        redis.cleanup()
