"""A gunicorn worker killed mid-reply: its reply is finalised, retried in place, and the
interaction moves on. Real gunicorn (the repo's gunicorn.conf.py), a real Redis cache, the
loopback model server, SIGKILL."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import demo_token, free_port, gunicorn_start, http_json, openai_env

pytestmark = pytest.mark.slow


class Gunicorn:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Gunicorn":
        self.process = gunicorn_start(
            self.env, self.port, "--workers", "1", "--access-logfile", "/dev/null", timeout=30
        )
        return self

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and b"gunicorn" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            if sig == signal.SIGKILL:
                workers = self.worker_pids()
                self.process.send_signal(sig)
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
            else:
                self.process.send_signal(sig)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def server_env(fake_openai_server, subprocess_env, redis_server) -> dict[str, str]:
    fake_openai_server.reset()
    env = {
        **subprocess_env,
        **openai_env(fake_openai_server, timeout_seconds=30),
        "LLM_MAX_RETRIES": "0",
        # Far longer than the test: a finalised reply was finalised because its worker died.
        "LLM_REPLY_LEASE_SECONDS": "600",
        "REDIS_URL": redis_server,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    env["TEST_TOKEN"] = demo_token(env)
    return env


@pytest.fixture
def gunicorn(server_env) -> Iterator[Gunicorn]:
    server = Gunicorn(server_env).start()
    try:
        yield server
    finally:
        server.stop()


def call(server: Gunicorn, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    return http_json(server.port, server.env["TEST_TOKEN"], method, path, body)


def messages(server: Gunicorn, interaction_id: str) -> list[dict]:
    status, body = call(server, "GET", f"/api/v1/interactions/{interaction_id}/messages/")
    assert status == 200
    return body["data"]


def start_reply(server: Gunicorn, fake, interaction_id: str, stream: bool) -> None:
    """Post a message whose reply the model is still generating when this returns."""
    path = f"/api/v1/interactions/{interaction_id}/messages/" + ("?stream=true" if stream else "")

    def post() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Authorization": f"Token {server.env['TEST_TOKEN']}", "Content-Type": "application/json"}
        connection.request("POST", path, body=json.dumps({"content": "Are you there?"}), headers=headers)
        try:
            response = connection.getresponse()
            while response.read(64):
                pass
        except (ConnectionError, http.client.HTTPException):
            pass  # The worker serving it is killed.
        connection.close()

    threading.Thread(target=post, daemon=True).start()
    deadline = time.monotonic() + 15
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.requests, "the model was never called"
    time.sleep(0.5)  # Streaming: the first deltas are out.


def wait_for_final_reply(server: Gunicorn, interaction_id: str, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        listed = messages(server, interaction_id)
        if listed[-1]["status"] != "in_progress" or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
def test_a_worker_killed_mid_reply_leaves_a_retryable_reply_that_retry_completes_in_place(
    gunicorn, fake_openai_server, stream
):
    _, interaction = call(gunicorn, "POST", "/api/v1/interactions/", {"title": "kill"})
    interaction_id = interaction["id"]
    if stream:
        fake_openai_server.then(text=" ".join(["word"] * 200), chunk_delay_seconds=0.2)
    else:
        fake_openai_server.then(delay_seconds=20)
    start_reply(gunicorn, fake_openai_server, interaction_id, stream)
    during = messages(gunicorn, interaction_id)  # Now cached in Redis.
    (worker,) = gunicorn.worker_pids()

    os.kill(worker, signal.SIGKILL)
    started = time.monotonic()
    after = wait_for_final_reply(gunicorn, interaction_id)
    finalised_after = time.monotonic() - started

    assert [(m["role"], m["status"]) for m in during] == [("user", "completed"), ("assistant", "in_progress")]
    # The text stored while it was generated is kept (incomplete); with none, the reply failed.
    kept = after[1]["content"]
    assert [(m["role"], m["status"]) for m in after] == [
        ("user", "completed"),
        ("assistant", "incomplete" if kept else "failed"),
    ]
    assert " ".join(["word"] * 200).startswith(kept)
    assert after[1]["error"]["code"] == "reply_abandoned"
    assert after[1]["id"] == during[1]["id"]
    assert finalised_after < 20, "finalised by the master when the worker died, not after the 600 s lease"

    fake_openai_server.default.text = "Here I am."
    status, retried = call(gunicorn, "POST", f"/api/v1/interactions/{interaction_id}/messages/{after[1]['id']}/retry/")
    assert status == 200
    assert (retried["id"], retried["status"], retried["content"]) == (after[1]["id"], "completed", "Here I am.")
    status, posted = call(gunicorn, "POST", f"/api/v1/interactions/{interaction_id}/messages/", {"content": "Again"})
    assert status == 201
    assert posted["reply"]["status"] == "completed"
    status, detail = call(gunicorn, "GET", f"/api/v1/interactions/{interaction_id}/")
    assert detail["message_count"] == 4 == len(messages(gunicorn, interaction_id))


def test_replies_of_a_server_killed_whole_are_finalised_when_it_starts_again(server_env, fake_openai_server):
    server = Gunicorn(server_env).start()
    try:
        _, interaction = call(server, "POST", "/api/v1/interactions/", {"title": "restart"})
        fake_openai_server.then(delay_seconds=20)
        start_reply(server, fake_openai_server, interaction["id"], stream=False)
    finally:
        server.stop(signal.SIGKILL)  # The master too: no child_exit.

    restarted = Gunicorn(server_env).start()
    try:
        after = wait_for_final_reply(restarted, interaction["id"])
    finally:
        restarted.stop()

    assert [(m["role"], m["status"]) for m in after] == [("user", "completed"), ("assistant", "failed")]
    assert after[1]["error"]["code"] == "reply_abandoned"


def stored_state(env: dict[str, str], interaction_id: str) -> dict:
    """What the database holds, read by a Django of the server's own settings (no server running)."""
    script = (
        "import json; from interactions.models import Interaction; from messages_app.models import Message; "
        f"i = Interaction.objects.get(pk='{interaction_id}'); "
        "print(json.dumps({'slot_held': i.reply_claimed_at is not None, 'message_count': i.message_count, "
        "'replies': [[m.status, m.error_code] for m in Message.objects.filter(interaction=i, role='assistant')]}))"
    )
    manage = [sys.executable, "manage.py", "shell", "-c", script]
    completed = subprocess.run(
        manage, env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
def test_a_reply_cut_when_the_server_stops_is_finalised_before_the_server_exits(server_env, fake_openai_server, stream):
    # The replacement may run on another host, whose start-up never sees this host's claims:
    # the stopping server finalises them itself (gunicorn.conf.py on_exit), none left for the lease.
    server = Gunicorn({**server_env, "GUNICORN_GRACEFUL_TIMEOUT": "1"}).start()
    _, interaction = call(server, "POST", "/api/v1/interactions/", {"title": "deploy"})
    fake_openai_server.then(delay_seconds=30)
    start_reply(server, fake_openai_server, interaction["id"], stream=stream)

    server.stop(signal.SIGTERM)

    assert stored_state(server_env, interaction["id"]) == {
        "slot_held": False,
        "message_count": 2,
        "replies": [["failed", "reply_abandoned"]],
    }
