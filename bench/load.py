"""Concurrent load against a real gunicorn, then a check of every interaction.

Run: .venv/bin/python bench/load.py [--clients 50 --messages 40 --shared-clients 20 --shared-messages 10]
     [--root CHECKOUT] [--json PATH]

Starts the loopback OpenAI-compatible model (bench/fake_openai_process.py, an instant
model) and gunicorn with the checkout's own gunicorn.conf.py (only the bind address is
ours) on a fresh SQLite file database, the embedded default. Then:

- `--clients` clients each post `--messages` user messages into an interaction of their
  own, one after the other, each with an Idempotency-Key; a 5xx or 409 is answered by
  replaying the same request (same key), as a client should;
- `--shared-clients` clients post `--shared-messages` messages each into one shared
  interaction, replaying on 409 `reply_in_progress` (the slot is busy) until accepted.

Afterwards every interaction is checked through the API (messages listed page by page,
the interaction's counters) and in the database: 0 × 5xx; every accepted user message
stored exactly once, directly followed by exactly one terminal reply to it; no reply
`in_progress`; `message_count` equals the stored rows. Exits 1 on any violation, listing
them. Prints requests/s and p50/p99 latency; timing is reported, never asserted.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, wait_for_port  # noqa: E402

TERMINAL = {"completed", "incomplete", "failed"}


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(seconds)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)


class Client:
    """One keep-alive HTTP connection with a token, reconnecting when the server closes it."""

    def __init__(self, port: int, token: str, stats: Stats) -> None:
        self.port, self.token, self.stats = port, token, stats
        self.connection: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body) if body is not None else None
        all_headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json", **(headers or {})}
        for attempt in range(3):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            started = time.monotonic()
            try:
                self.connection.request(method, path, body=payload, headers=all_headers)
                response = self.connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            self.stats.record(response.status, time.monotonic() - started)
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            return response.status, json.loads(data) if data else None
        raise AssertionError("unreachable")


def post_until_accepted(client: Client, interaction_id: str, content: str, key: str, deadline: float) -> None:
    """Post one user message, replaying it with its key until it is accepted (201)."""
    path = f"/api/v1/interactions/{interaction_id}/messages/"
    failures = 0
    while True:
        status, body = client.call("POST", path, {"content": content}, {"Idempotency-Key": key})
        if status == 201:
            return
        if status >= 500:
            client.stats.violation(f"{status} on POST {content!r}: {json.dumps(body)[:300]}")
            failures += 1
            if failures == 5:
                return
        elif status != 409:
            client.stats.violation(f"unexpected {status} on POST {content!r}: {json.dumps(body)[:300]}")
            return
        if time.monotonic() > deadline:
            client.stats.violation(f"{content!r} not accepted before the deadline (last {status})")
            return
        # Back off as a polite client does: the reply slot frees when the reply is stored.
        time.sleep(random.uniform(0.05, 0.25))


def own_interaction_client(port: int, token: str, stats: Stats, index: int, messages: int, deadline: float) -> str:
    client = Client(port, token, stats)
    status, body = client.call("POST", "/api/v1/interactions/", {"title": f"own {index}"})
    if status != 201:
        stats.violation(f"creating interaction {index}: {status}")
        return ""
    for number in range(messages):
        post_until_accepted(client, body["id"], f"own {index} message {number}", f"own-{index}-{number}", deadline)
    return str(body["id"])


def shared_interaction_client(
    port: int, token: str, stats: Stats, interaction_id: str, index: int, messages: int, deadline: float
) -> None:
    client = Client(port, token, stats)
    for number in range(messages):
        post_until_accepted(
            client, interaction_id, f"shared {index} message {number}", f"sh-{index}-{number}", deadline
        )


# --- Checking ------------------------------------------------------------------------------


def listed_messages(client: Client, interaction_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = ""
    while True:
        query = f"?limit=100&after={after}" if after else "?limit=100"
        status, body = client.call("GET", f"/api/v1/interactions/{interaction_id}/messages/{query}")
        if status != 200:
            raise RuntimeError(f"listing {interaction_id}: {status}")
        rows += body["data"]
        if not body["has_more"]:
            return rows
        after = body["last_id"]


def check_interaction(client: Client, interaction_id: str, expected_contents: set[str], stats: Stats) -> None:
    rows = listed_messages(client, interaction_id)
    _, detail = client.call("GET", f"/api/v1/interactions/{interaction_id}/")
    where = f"interaction {interaction_id}"
    if detail["message_count"] != len(rows):
        stats.violation(f"{where}: message_count {detail['message_count']} but {len(rows)} messages listed")
    users = [row for row in rows if row["role"] == "user"]
    contents = Counter(row["content"] for row in users)
    for content, times in contents.items():
        if times != 1:
            stats.violation(f"{where}: {content!r} stored {times} times")
    missing = expected_contents - set(contents)
    if missing:
        stats.violation(f"{where}: {len(missing)} accepted messages not stored, e.g. {sorted(missing)[:3]}")
    for position, row in enumerate(rows):
        if row["status"] == "in_progress":
            stats.violation(f"{where}: message {row['id']} still in_progress")
        if row["role"] != "user":
            continue
        following = rows[position + 1] if position + 1 < len(rows) else None
        if following is None or following["role"] != "assistant" or following["reply_to"] != row["id"]:
            stats.violation(f"{where}: user message {row['id']} not directly followed by its reply")
        elif following["status"] not in TERMINAL:
            stats.violation(f"{where}: reply {following['id']} is {following['status']}")
    replies = Counter(row["reply_to"] for row in rows if row["role"] == "assistant")
    for reply_to, times in replies.items():
        if times != 1:
            stats.violation(f"{where}: {times} replies to {reply_to}")


def check_database(database: Path, stats: Stats) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        for interaction_id, counted, stored in db.execute(
            "SELECT i.id, i.message_count, COUNT(m.id) FROM interactions_interaction i "
            "LEFT JOIN messages_app_message m ON m.interaction_id = i.id GROUP BY i.id"
        ):
            if counted != stored:
                stats.violation(f"database: interaction {interaction_id} message_count {counted}, rows {stored}")
        (in_progress,) = db.execute("SELECT COUNT(*) FROM messages_app_message WHERE status = 'in_progress'").fetchone()
        if in_progress:
            stats.violation(f"database: {in_progress} replies in_progress")
        for user_id, replies in db.execute(
            "SELECT u.id, COUNT(r.id) FROM messages_app_message u LEFT JOIN messages_app_message r "
            "ON r.reply_to_id = u.id AND r.role = 'assistant' WHERE u.role = 'user' GROUP BY u.id"
        ):
            if replies != 1:
                stats.violation(f"database: user message {user_id} has {replies} replies")
        (claimed,) = db.execute(
            "SELECT COUNT(*) FROM interactions_interaction WHERE reply_claimed_at IS NOT NULL"
        ).fetchone()
        if claimed:
            stats.violation(f"database: {claimed} reply slots still claimed after the load")
        (messages,) = db.execute("SELECT COUNT(*) FROM messages_app_message").fetchone()
    return {"messages": messages}


# --- Processes -----------------------------------------------------------------------------


def setup_users(root: Path, env: dict[str, str], count: int) -> list[str]:
    script = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        f"users = [User.objects.create(username=f'load{{i}}') for i in range({count})]\n"
        "tokens = [Token.objects.create(user=user).key for user in users]\n"
        "print(json.dumps(tokens))\n"
    )
    manage = [sys.executable, str(root / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=root)
    output = subprocess.run(
        [*manage, "shell", "-c", script], env=env, check=True, cwd=root, capture_output=True, text=True
    ).stdout
    return list(json.loads(output.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--shared-clients", type=int, default=20)
    parser.add_argument("--shared-messages", type=int, default=10)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    parser.add_argument("--deadline", type=float, default=900, help="seconds before clients give up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.root.resolve()

    workdir = Path(tempfile.mkdtemp(prefix="chat-load-"))
    database = workdir / "db.sqlite3"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_", "API_"))
    }
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "fake_openai_process.py"), "12"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().decode().strip()
        env.update(
            {
                "PYTHONPATH": str(root),
                "DJANGO_SETTINGS_MODULE": "chatproject.settings",
                "DATABASE_URL": f"sqlite:///{database}",
                "LLM_PROVIDER": "openai",
                "OPENAI_API_KEY": "sk-load",
                "OPENAI_BASE_URL": base_url,
                "LLM_MAX_RETRIES": "0",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "API_THROTTLE_RATE": "1000000/minute",
                # Posting messages has a stricter limit of its own; the load posts far faster.
                "API_MESSAGE_POST_THROTTLE_RATE": "1000000/minute",
                # Without DEBUG the server refuses to start without a key of its own.
                "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "l" * 40,
                "GUNICORN_LOG_LEVEL": "warning",
            }
        )
        tokens = setup_users(root, env, args.clients + 1)
        port = free_port()
        log = (workdir / "gunicorn.log").open("wb")
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"),
                *("--access-logfile", "/dev/null", "chatproject.wsgi:application"),
            ],
            env=env,
            cwd=root,
            stdout=log,
            stderr=log,
        )
        wait_for_port(port, timeout=60)

        stats = Stats()
        shared_token = tokens[-1]
        _, shared = Client(port, shared_token, stats).call("POST", "/api/v1/interactions/", {"title": "shared"})
        stats.latencies.clear()
        stats.statuses.clear()
        deadline = time.monotonic() + args.deadline
        own_ids: dict[int, str] = {}
        threads = []
        for index in range(args.clients):

            def run_own(index: int = index) -> None:
                own_ids[index] = own_interaction_client(port, tokens[index], stats, index, args.messages, deadline)

            threads.append(threading.Thread(target=run_own, daemon=True))
        for index in range(args.shared_clients):
            threads.append(
                threading.Thread(
                    target=shared_interaction_client,
                    args=(port, shared_token, stats, shared["id"], index, args.shared_messages, deadline),
                    daemon=True,
                )
            )
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        requests = sum(stats.statuses.values())
        latencies = sorted(stats.latencies)
        statuses = dict(sorted(stats.statuses.items()))

        checker_stats = Stats()
        expected: dict[str, set[str]] = defaultdict(set)
        for index, interaction_id in own_ids.items():
            expected[interaction_id] = {f"own {index} message {n}" for n in range(args.messages)}
        expected[shared["id"]] = {
            f"shared {index} message {n}" for index in range(args.shared_clients) for n in range(args.shared_messages)
        }
        for index, interaction_id in [*own_ids.items(), (args.clients, shared["id"])]:
            if interaction_id:
                check_interaction(
                    Client(port, tokens[index], checker_stats), interaction_id, expected[interaction_id], stats
                )
        totals = check_database(database, stats)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        fake.stdin.close()  # type: ignore[union-attr]
        fake.wait(timeout=10)

    load = os.getloadavg()
    report = {
        "clients": args.clients,
        "messages": args.messages,
        "shared_clients": args.shared_clients,
        "shared_messages": args.shared_messages,
        "root": str(root),
        "requests": requests,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(requests / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1)
        if latencies
        else None,
        "statuses": statuses,
        "stored_messages": totals["messages"],
        "violations": stats.violations,
        "load_average": [round(value, 2) for value in load],
    }
    print(
        f"{requests} requests in {elapsed:.1f} s: {report['requests_per_second']} req/s, "
        f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms; statuses {statuses}; "
        f"{totals['messages']} messages stored; load average {report['load_average']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if stats.violations:
        print(f"{len(stats.violations)} VIOLATIONS:", file=sys.stderr)
        for violation in stats.violations[:50]:
            print(f"  {violation}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print("OK: no 5xx, every accepted message stored once with one terminal reply, counters equal rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
