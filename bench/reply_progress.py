"""What storing and relaying a reply's progress costs, as ratios against baselines from the same run.

Run: .venv/bin/python bench/reply_progress.py [--quick] [--json PATH]

1. Progress writes and characters written per streamed reply, through the real reply service,
   the real OpenAI SDK and the loopback model server, on SQLite: the project's rule (interval or
   characters, once the text grew by LLM_REPLY_PROGRESS_GROWTH) against the naive rule (the text
   rewritten whenever a write is due, no growth rule), both in the worst case for the time rule
   (a write due at every delta). Statements are counted on the database connection.
2. The generating worker with the Redis relay pointed at a black hole (a port that accepts and
   never answers) and at a real redis-server, against no relay: time per streamed reply,
   interleaved rounds, medians.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fake_openai_process import reply_text  # noqa: E402


def django_setup(workdir: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "DJANGO_DEBUG": "false",
            # Without DEBUG the settings have no key of their own.
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "p" * 40,
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "LLM_PROVIDER": "offline",
            "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": "",
            "MONGODB_URI": "",
            "REDIS_URL": "",
            "REPLY_RELAY_REDIS_URL": "",
            "LOG_LEVEL": "ERROR",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def streamed_reply(user: Any) -> dict[str, Any]:
    """POST a user message with ?stream=true through the API, consume the stream; what it wrote."""
    from django.db import connection
    from django.urls import reverse
    from rest_framework.test import APIClient

    from interactions.services import interaction_create

    interaction = interaction_create(owner=user, title="bench", model_name="bench-model")
    client = APIClient()
    client.force_authenticate(user)
    writes: list[int] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("UPDATE") and 'UPDATE "messages_app_message" SET "content"' in sql:
            writes.append(len(params[0]))  # The text written; the other parameters are the row's keys.
        return execute(sql, params, many, context)

    url = reverse("message-list", kwargs={"interaction_id": str(interaction.pk)})
    started = time.perf_counter()
    with connection.execute_wrapper(count):
        response = client.post(f"{url}?stream=true", {"content": "hello"}, format="json")
        body = b"".join(response.streaming_content)
        response.close()
    seconds = time.perf_counter() - started
    if b"reply.completed" not in body:
        raise RuntimeError(f"the stream did not complete: {body[-300:]!r}")
    return {"seconds": seconds, "content_writes": len(writes), "chars_written": sum(writes)}


class BlackHole:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return


def bench_progress_writes(user: Any, words_list: list[int], server: Any) -> list[dict[str, Any]]:
    from django.test import override_settings

    rows = []
    for words in words_list:
        server.default.text = reply_text(words)
        chars = len(server.default.text)
        measured = {}
        for label, growth in (("naive", 0.0), ("project", None)):
            overrides: dict[str, Any] = {"LLM_REPLY_PROGRESS_INTERVAL_SECONDS": 0}
            if growth is not None:
                overrides["LLM_REPLY_PROGRESS_GROWTH"] = growth
            with override_settings(**overrides):
                measured[label] = streamed_reply(user)
        rows.append(
            {
                "name": f"progress_writes_{words}_words",
                "reply_chars": chars,
                "deltas": words + 1,
                "naive": measured["naive"],
                "project": measured["project"],
                "chars_written_per_reply_char": {
                    label: round(m["chars_written"] / chars, 2) for label, m in measured.items()
                },
            }
        )
    return rows


def bench_relay_outage(user: Any, rounds: int, server: Any) -> dict[str, Any]:
    from django.test import override_settings

    from llm import relay

    server.default.text = reply_text(400)
    hole = BlackHole()
    redis_binary = shutil.which("redis-server")
    redis_process = None
    sides = {"no relay": "", "black-holed relay": f"redis://127.0.0.1:{hole.port}/0"}
    if redis_binary:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            redis_port = probe.getsockname()[1]
        redis_process = subprocess.Popen(
            [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        sides["redis relay"] = f"redis://127.0.0.1:{redis_port}/0"
    times: dict[str, list[float]] = {label: [] for label in sides}
    try:
        for round_ in range(rounds):
            order = list(sides.items()) if round_ % 2 == 0 else list(reversed(sides.items()))
            for label, url in order:
                relay.publisher.breaker.reset()
                with override_settings(REPLY_RELAY_REDIS_URL=url, REPLY_RELAY_BREAKER_SECONDS=10):
                    times[label].append(streamed_reply(user)["seconds"] * 1000)
                    relay.publisher.wait_idle(5)
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {
        "name": "streamed_reply_time_with_relay_vs_without",
        "unit": "ms/reply (400 words, instant model)",
        "median_ms": {label: round(value, 1) for label, value in medians.items()},
        "ratio_to_no_relay": {label: round(value / medians["no relay"], 2) for label, value in medians.items()},
        "rounds": rounds,
        "black_hole_connections": len(hole.accepted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-progress-"))
    try:
        django_setup(workdir)
        from django.contrib.auth.models import User
        from django.test import override_settings

        from tests.fake_openai import FakeOpenAIServer

        server = FakeOpenAIServer()
        server._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        server.start()
        user = User.objects.create_user(username="bench")
        provider = {"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "x", "OPENAI_BASE_URL": server.base_url}
        with override_settings(**provider, API_THROTTLE_RATE="100000/minute"):
            words = [100, 500] if args.quick else [100, 1000, 2000]
            report = {
                "load_average": os.getloadavg(),
                "cpus": os.cpu_count(),
                "progress": bench_progress_writes(user, words, server),
                "relay": bench_relay_outage(user, 2 if args.quick else 7, server),
            }
        server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
