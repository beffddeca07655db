"""A write that waits for another process's SQLite write lock does not stop its gevent worker.

Two gunicorn workers share one SQLite file: while one writes, the other's writes wait for the
lock. The wait must let the worker's other requests run (core/sqlite.py); SQLite's own
busy handler would sleep inside the C library with the whole worker stopped.
"""

import sqlite3
import threading
from pathlib import Path

import pytest
from django.db import connection

from tests.test_gevent_worker import Gunicorn, gunicorn_running, new_interaction

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock: the embedded default only"),
]

BUSY_TIMEOUT_SECONDS = 4.0


def post_in_background(server: Gunicorn, interaction: str) -> tuple[threading.Thread, list[tuple[int, dict]]]:
    answers: list[tuple[int, dict]] = []
    path = f"/api/v1/interactions/{interaction}/messages/"
    thread = threading.Thread(target=lambda: answers.append(server.call("POST", path, {"content": "hi"})))
    thread.start()
    return thread, answers


def test_a_write_waiting_for_the_lock_lets_the_worker_answer_others_then_succeeds_or_answers_503(subprocess_env):
    database = Path(subprocess_env["DATABASE_URL"].removeprefix("sqlite:///"))
    with gunicorn_running(subprocess_env, SQLITE_BUSY_TIMEOUT_SECONDS=str(BUSY_TIMEOUT_SECONDS)) as server:
        interaction = new_interaction(server)
        other_process = sqlite3.connect(database, isolation_level=None)

        other_process.execute("BEGIN IMMEDIATE")
        post, answers = post_in_background(server, interaction)
        post.join(timeout=1.0)
        # The POST waits for the lock; the same (only) worker still answers.
        waiting_before = answers == []
        health = server.connect()
        health.request("GET", "/healthz")
        health_status = health.getresponse().status
        read_status = server.call("GET", f"/api/v1/interactions/{interaction}/")[0]
        waiting_after = answers == []
        other_process.execute("COMMIT")
        post.join(timeout=30)
        posted = answers[0][0] if answers else None

        other_process.execute("BEGIN IMMEDIATE")
        try:
            post, answers = post_in_background(server, interaction)
            post.join(timeout=BUSY_TIMEOUT_SECONDS + 20)
        finally:
            other_process.execute("COMMIT")
        messages = server.call("GET", f"/api/v1/interactions/{interaction}/messages/")[1]

    # Readers never wait for the writer.
    assert other_process.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert (waiting_before, health_status, read_status, waiting_after) == (True, 200, 200, True)
    assert posted == 201
    # A write that never gets the lock: 503 in the envelope, and nothing of that POST stored.
    status, body = answers[0]
    assert status == 503
    assert body["error"]["code"] == "database_unavailable"
    assert [m["content"] for m in messages["data"] if m["role"] == "user"] == ["hi"]
