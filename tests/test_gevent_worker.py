"""The server's concurrency model: gunicorn's gevent worker, and the clients that must cooperate with it.

A gevent worker serves every request of a process on one thread, switching between them
whenever one waits on a socket. That only works if everything a request waits on yields:
the openai SDK (httpx), django-redis (redis-py), pymongo. Each test below makes many
requests wait at once and proves, at the server they wait on, that all of them were
waiting together: one that blocked the thread would have let only one through at a time.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from textwrap import dedent
from typing import Any

import pytest
import redis

from llm.providers import ChatRequest, provider_get
from tests.conftest import ROOT, free_port, gunicorn_serving

pytestmark = pytest.mark.slow


# --- A real gunicorn with the repo's configuration ---------------------------------------


class Gunicorn:
    def __init__(self, process: subprocess.Popen[bytes], port: int, token: str) -> None:
        self.process = process
        self.port = port
        self.token = token

    @property
    def worker_pid(self) -> int:
        children = [
            pid
            for pid in open(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read().split()  # noqa: SIM115
            # Workers are forks of the master: not the short-lived finalise_abandoned_replies it
            # starts (gunicorn.conf.py), running or exited.
            if _cmdline(pid) == _cmdline(str(self.process.pid))
        ]
        assert len(children) == 1, children
        return int(children[0])

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.worker_pid}/fd"))

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(
        self, method: str, path: str, body: Any = None, connection: http.client.HTTPConnection | None = None
    ) -> tuple[int, Any]:
        own = connection is None
        connection = connection or self.connect()
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        payload = json.loads(response.read() or b"null")
        if own:
            connection.close()
        return response.status, payload


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()
    except OSError:
        return b""


@contextmanager
def gunicorn_running(subprocess_env: dict[str, str], **variables: str) -> Iterator[Gunicorn]:
    """The repo's gunicorn.conf.py (its default worker class), one worker, on a free port."""
    env = {**subprocess_env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "GUNICORN_WORKERS": "1", **variables}
    with gunicorn_serving(env, "--access-logfile", "/dev/null") as served:
        yield Gunicorn(served.process, served.port, served.token)


def new_interaction(server: Gunicorn) -> str:
    status, body = server.call("POST", "/api/v1/interactions/", {"title": "concurrent"})
    assert status == 201
    return str(body["id"])


def post_at_once(server: Gunicorn, paths: list[str], body: Any) -> tuple[list[int], list[threading.Thread]]:
    """Start POSTing to every path at once, each from its own client; join the threads for the statuses."""
    statuses: list[int] = []
    start = threading.Barrier(len(paths), timeout=20)

    def post(path: str) -> None:
        start.wait()
        statuses.append(server.call("POST", path, body)[0])

    threads = [threading.Thread(target=post, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    return statuses, threads


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def test_one_worker_process_waits_on_many_model_replies_at_once(fake_openai_server, subprocess_env):
    fake_openai_server.reset()
    replies = 24
    with gunicorn_running(
        subprocess_env,
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake_openai_server.base_url,
        LLM_TIMEOUT_SECONDS="40",
    ) as server:
        interactions = [new_interaction(server) for _ in range(replies)]
        fake_openai_server.gate = threading.Event()

        statuses, threads = post_at_once(
            server, [f"/api/v1/interactions/{pk}/messages/" for pk in interactions], {"content": "hello"}
        )
        # The model answers none of them until all are waiting on it.
        waiting = fake_openai_server.wait_for_in_flight(replies)
        fake_openai_server.gate.set()
        join(threads)

        # One process, one thread: all of them were waiting on the model together, each after
        # writing its user message and its in_progress reply. Had a waiting request held
        # SQLite's write lock (network I/O inside a transaction), the next one could not
        # have written and the worker would have stalled on it.
        assert waiting == replies
        assert statuses == [201] * replies
        for pk in interactions:
            page = server.call("GET", f"/api/v1/interactions/{pk}/messages/")[1]
            assert [(m["role"], m["status"]) for m in page["data"]] == [
                ("user", "completed"),
                ("assistant", "completed"),
            ]


def test_a_burst_of_replies_holds_at_most_LLM_MAX_CONCURRENT_CALLS_provider_calls_per_process(
    fake_openai_server, subprocess_env
):
    fake_openai_server.reset()
    with gunicorn_running(
        subprocess_env,
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake_openai_server.base_url,
        LLM_TIMEOUT_SECONDS="40",
        LLM_MAX_CONCURRENT_CALLS="3",
    ) as server:
        interactions = [new_interaction(server) for _ in range(10)]
        fake_openai_server.gate = threading.Event()

        statuses, threads = post_at_once(
            server, [f"/api/v1/interactions/{pk}/messages/" for pk in interactions], {"content": "hello"}
        )
        fake_openai_server.wait_for_in_flight(3)
        time.sleep(1)  # Time for the other seven to arrive and queue for a connection.
        fake_openai_server.gate.set()
        join(threads)

        # Every reply was made; the ones beyond the bound waited for a free connection.
        assert statuses == [201] * 10
        assert len(fake_openai_server.requests) == 10
        assert fake_openai_server.max_in_flight == 3


def test_provider_calls_beyond_the_bound_wait_for_a_free_connection_instead_of_opening_more(fake_llm, settings):
    settings.LLM_MAX_CONCURRENT_CALLS = 2
    settings.LLM_TIMEOUT_SECONDS = 10
    fake_llm.default.delay_seconds = 0.3
    provider = provider_get()
    replies: list[str] = []

    def call() -> None:
        request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
        replies.extend(chunk.delta for chunk in provider.chat(request, stream=False))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert replies == ["Hello from the fake model."] * 6
    assert fake_llm.max_in_flight == 2


@pytest.mark.sqlite_only(reason="counts the SQLite connection files each kept-alive client holds open")
def test_database_connections_are_closed_when_their_client_goes(subprocess_env):
    with gunicorn_running(subprocess_env) as server:
        assert server.call("GET", "/api/v1/interactions/")[0] == 200
        baseline = wait_for_open_files(server, lambda count: True)

        clients = [server.connect() for _ in range(30)]
        for client in clients:
            # Each keeps its connection (keep-alive) and with it a database connection.
            assert server.call("GET", "/api/v1/interactions/", connection=client)[0] == 200
            assert server.call("GET", "/api/v1/interactions/", connection=client)[0] == 200
        while_open = server.open_files()
        for client in clients:
            client.close()
        after_concurrent = wait_for_open_files(server, lambda count: count <= baseline)
        for _ in range(100):
            assert server.call("GET", "/api/v1/interactions/")[0] == 200
        after_sequential = wait_for_open_files(server, lambda count: count <= baseline)

    # 30 sockets and 30 SQLite connections (at least a file each) while the clients stay.
    assert while_open >= baseline + 60
    # Gunicorn's own gevent worker left them to the garbage collector: 61 files still open
    # after these 30 clients had gone, 90 after the 100 requests.
    assert after_concurrent == baseline
    assert after_sequential == baseline


def wait_for_open_files(server: Gunicorn, done: Any, timeout: float = 10.0) -> int:
    """The worker's open files once `done(count)` holds (a closed client takes a moment to be noticed)."""
    deadline = time.monotonic() + timeout
    time.sleep(0.3)
    count = server.open_files()
    while not done(count) and time.monotonic() < deadline:
        time.sleep(0.1)
        count = server.open_files()
    return count


# --- pymongo and django-redis in a gevent-patched process --------------------------------

PATCHED_CHILD = """
from gevent import monkey

monkey.patch_all()  # As gunicorn's gevent worker does, before Django is imported.

import json, sys
import django
import gevent

django.setup()
PARAMS = json.loads(sys.argv[1])
"""


def run_patched_child(script: str, env: dict[str, str], **params: Any) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-", json.dumps(params)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    child.stdin.write(PATCHED_CHILD + dedent(script))
    child.stdin.close()
    child.stdin = None  # Written; communicate() reads the answer.
    return child


def child_result(child: subprocess.Popen[str]) -> Any:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def child_env(subprocess_env: dict[str, str], **variables: str) -> dict[str, str]:
    return {**subprocess_env, "LLM_PROVIDER": "offline", "MONGODB_URI": "", "REDIS_URL": "", **variables}


MONGODB_QUERIES = """
import uuid
from django.db import connections
from interactions.models import Interaction

clients = []

def lookup():
    clients.append(id(connections["default"].connection))
    return Interaction.objects.filter(pk=uuid.uuid4()).first()

greenlets = [gevent.spawn(lookup) for _ in range(PARAMS["greenlets"])]
gevent.joinall(greenlets, raise_error=True)
from django_mongodb_backend.base import DatabaseWrapper
print(json.dumps({
    "found": [g.value for g in greenlets],
    "clients": len(set(clients)),
    "pools": len(DatabaseWrapper._connection_pools),
}))
"""


def test_pymongo_under_gevent_runs_queries_concurrently_on_one_process_wide_client(subprocess_env):
    from mockupdb import MockupDB

    greenlets = 8
    port = free_port()
    server = MockupDB(port=port, min_wire_version=0, max_wire_version=25, auto_ismaster=True)

    def answer(request: Any) -> Any:
        if "buildinfo" in request.doc:
            return request.ok(version="8.0.4", versionArray=[8, 0, 4, 0])
        if "ping" in request.doc or "endSessions" in request.doc:
            return request.ok()
        return False  # Queries wait in the queue for receives() below.

    server.autoresponds(answer)
    server.run()
    try:
        env = child_env(
            subprocess_env,
            MONGODB_URI=f"mongodb://localhost:{port}/chat",
            MONGODB_SERVER_SELECTION_TIMEOUT_MS="5000",
            MONGODB_SOCKET_TIMEOUT_MS="20000",
        )
        child = run_patched_child(MONGODB_QUERIES, env, greenlets=greenlets)
        # Every query reaches the server before any is answered: none blocked the others.
        pending = [server.receives(timeout=30) for _ in range(greenlets)]
        assert all("aggregate" in request.doc for request in pending), [request.doc for request in pending]
        for request in pending:
            request.reply(cursor={"id": 0, "firstBatch": [], "ns": "chat." + request.doc["aggregate"]})
        result = child_result(child)
    finally:
        server.stop()

    assert result["found"] == [None] * greenlets
    # Each greenlet has its own Django connection object, all on the one MongoClient.
    assert result["clients"] == 1
    assert result["pools"] == 1


REDIS_WAITS = """
from django.core.cache import cache
from django_redis import get_redis_connection

cache.set("greeting", "hello", timeout=60)
connection = get_redis_connection("default")

def wait(index):
    return connection.blpop(["bench-queue"], timeout=30)[1].decode()

greenlets = [gevent.spawn(wait, index) for index in range(PARAMS["greenlets"])]
gevent.joinall(greenlets, raise_error=True)
print(json.dumps({"popped": sorted(g.value for g in greenlets), "cached": cache.get("greeting")}))
"""


def test_django_redis_under_gevent_lets_every_greenlet_wait_on_redis_at_once(redis_server, subprocess_env):
    greenlets = 8
    watcher = redis.Redis.from_url(redis_server)
    watcher.delete("bench-queue")
    env = child_env(subprocess_env, REDIS_URL=redis_server, CACHE_SOCKET_TIMEOUT_SECONDS="40")
    child = run_patched_child(REDIS_WAITS, env, greenlets=greenlets)
    deadline = time.monotonic() + 30
    while watcher.info("clients")["blocked_clients"] < greenlets and time.monotonic() < deadline:
        time.sleep(0.05)
    blocked = watcher.info("clients")["blocked_clients"]
    watcher.rpush("bench-queue", *[str(n) for n in range(greenlets)])
    result = child_result(child)

    # All of them were blocked in BLPOP at the server together: none held the thread.
    assert blocked == greenlets
    assert result == {"popped": sorted(str(n) for n in range(greenlets)), "cached": "hello"}
