"""HTTP benchmark: the project's own gunicorn configuration, over real sockets, against floors.

Run: .venv/bin/python bench/http_bench.py [--quick] [--json PATH] [--server-env NAME=VALUE ...]

Starts gunicorn with gunicorn.conf.py (bench/bench_settings.py adds two floor views to the
project's URLs), a model server (bench/model_server.py) and loads them from wrk (throughput
rows) and from asyncio clients in this process (first delta, the in-flight sweep). Every
throughput row is a ratio to its floor served by the same processes, measured in
interleaved rounds (AB BA AB ...) in one run. See bench/README.md ("HTTP mode").
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LineServer, Row, fmt, free_port, interleaved, machine, wait_for_port  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "http-latest.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
USER_TEXT = "How do I measure the overhead of a web API without fooling myself?"


@dataclass(frozen=True)
class Profile:
    rounds: int  # interleaved rounds per wrk comparison
    seconds: int  # per wrk run
    connections: int  # wrk connections
    sweep: tuple[int, ...]  # in-flight levels
    sweep_seconds: float  # measured window per level
    model_seconds: float  # the slow model's reply time
    stream_deltas: int
    poll_messages: int  # the long conversation of the after= row
    first_delta_samples: int
    long_run_seconds: float  # the fd/memory watch


DEFAULT = Profile(
    rounds=3,
    seconds=5,
    connections=16,
    sweep=(16, 50, 100, 200),
    sweep_seconds=20,
    model_seconds=2.0,
    stream_deltas=40,
    poll_messages=100_000,
    first_delta_samples=30,
    long_run_seconds=60,
)
QUICK = Profile(
    rounds=1,
    seconds=1,
    connections=4,
    sweep=(4,),
    sweep_seconds=3,
    model_seconds=0.2,
    stream_deltas=4,
    poll_messages=300,
    first_delta_samples=3,
    long_run_seconds=2,
)


# --- Processes ----------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """The worker processes of a gunicorn master (not the short-lived finalise_abandoned_replies
    it starts when a worker exits, see gunicorn.conf.py)."""
    try:
        pids = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [child for child in pids if _cmdline(child) == _cmdline(pid)]  # forks of the master


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


UPSTREAM_PORTS: set[int] = set()  # the model server's


def tcp_sockets(pid: int) -> dict[str, int]:
    """Socket inode -> kind (`client`: a connection accepted by the server; `upstream`: to the model)."""
    kinds = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                kinds[fields[9]] = "upstream" if remote_port in UPSTREAM_PORTS else "client"
    return kinds


def open_files(pid: int) -> dict[str, int]:
    counts: Counter[str] = Counter()
    sockets = tcp_sockets(pid)
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    kind = sockets.get(target[8:-1], "other_socket")
                else:
                    kind = "sqlite" if ".sqlite3" in target else "other"
                counts[kind] += 1
    return {"total": sum(counts.values()), **counts}


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class ModelServer(LineServer):
    def __init__(self) -> None:
        super().__init__(ROOT / "bench" / "model_server.py")
        UPSTREAM_PORTS.add(self.port)


class Server:
    """gunicorn -c gunicorn.conf.py with the bench settings, 2 workers unless told otherwise."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = workdir / f"gunicorn-{name}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
                    *("--bind", f"127.0.0.1:{self.port}", "--access-logfile", "/dev/null"),
                    "chatproject.wsgi:application",
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout=30)
        # Workers load Django after the master binds, and the first request of each loads
        # the URLs and views: warm every worker before anything is measured.
        deadline = time.monotonic() + 60
        warmed = 0
        while warmed < 20 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                    sock.sendall(b"GET /bench/floor/bare/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    while sock.recv(65536):
                        pass
                warmed += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Data -----------------------------------------------------------------------------------


class Data:
    """The database the servers use, seeded directly (outside any measurement)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.path = workdir / "bench.sqlite3"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
        # This process seeds and checks the same database with the project's own settings.
        for name, value in env.items():
            if name.startswith(("DATABASE_", "DJANGO_", "LLM_", "OPENAI_", "MONGODB_", "REDIS_", "LOG_LEVEL")):
                os.environ[name] = value
        os.environ["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection
        from rest_framework.authtoken.models import Token

        from bench.floor_views import FLOOR_TABLE

        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {FLOOR_TABLE} (id INTEGER PRIMARY KEY, content TEXT NOT NULL)")
        self.user = User.objects.create_user(username="bench", password=None)
        self.token = Token.objects.create(user=self.user).key

    def interaction(self, *, model: str, title: str = "bench") -> str:
        from interactions.services import interaction_create

        return str(interaction_create(owner=self.user, title=title, model_name=model, prompt="Be brief.").pk)

    def add_messages(self, interaction_id: str, count: int) -> str:
        """`count` messages, one a second up to now; returns the newest's id."""
        from datetime import timedelta

        from django.utils import timezone

        from interactions.models import Interaction
        from messages_app.models import Message

        start = timezone.now() - timedelta(seconds=count + 10)
        for offset in range(0, count, 5000):
            Message.objects.bulk_create(
                Message(
                    interaction_id=interaction_id,
                    role="user" if index % 2 == 0 else "assistant",
                    content=f"message {index} of a long conversation",
                    created_at=start + timedelta(seconds=index),
                )
                for index in range(offset, min(offset + 5000, count))
            )
        Interaction.objects.filter(pk=interaction_id).update(message_count=count)
        newest = Message.objects.filter(interaction_id=interaction_id).order_by("-created_at", "-id").first()
        assert newest is not None
        return str(newest.pk)

    def in_progress(self, interactions: list[str]) -> int:
        """Replies of `interactions` stored as in_progress (read with sqlite3 itself: callable from the event loop)."""
        ids = {uuid.UUID(pk).hex for pk in interactions}
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as database:
            query = "SELECT interaction_id FROM messages_app_message WHERE status = 'in_progress'"
            return sum(1 for (interaction_id,) in database.execute(query) if interaction_id in ids)

    def interaction_version(self, interaction_id: str) -> int:
        from interactions.models import Interaction

        return int(Interaction.objects.get(pk=interaction_id).version)


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx responses + socket errors


def parse_duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None = None,
    expect_status: int | None = None,
) -> WrkResult:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"([0-9]+) requests in", output).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses: ([0-9]+)", output):
        errors += int(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in found.groups())
    return WrkResult(rps, parse_duration_ms(latency["50"]), parse_duration_ms(latency["99"]), requests, errors)


def post_script(workdir: Path, name: str, paths: list[str], body: dict[str, Any]) -> Path:
    """A wrk script POSTing `body` to `paths` in turn, each wrk thread to its own half of them."""
    script = workdir / f"{name}.lua"
    listed = ",".join(json.dumps(p) for p in paths)
    script.write_text(
        f"""
local paths = {{{listed}}}
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  i = 0
  wrk.method = "POST"
  wrk.body = {json.dumps(json.dumps(body))}
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  i = i + 1
  return wrk.format(nil, paths[((i * 2 + offset) % #paths) + 1])
end
"""
    )
    return script


def compare(
    rounds: int, floor: Callable[..., WrkResult], subject: Callable[..., WrkResult]
) -> tuple[WrkResult, WrkResult, float, list[float]]:
    """Interleaved rounds (AB BA AB ...): medians of each side, median of per-round rps ratios.

    Each side first runs once for a second, unmeasured (connections, caches, lazy imports).
    """
    floor(seconds=1)
    subject(seconds=1)
    pairs = interleaved(floor, subject, rounds)
    floors = [base for base, _ in pairs]
    subjects = [subj for _, subj in pairs]
    # A side that answered nothing (workers restarting) is a ratio of 0 or infinity, not a crash.
    ratios = [subj.rps / base.rps if base.rps else math.inf for base, subj in pairs]
    return median_result(floors), median_result(subjects), statistics.median(ratios), ratios


def median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
    )


# --- An asyncio HTTP/1.1 client (first delta, sweep) ------------------------------------------


class HttpError(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
    """The body's pieces as they arrive (an async iterator of bytes)."""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> None:
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await self.writer.drain()

    async def request(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> tuple[int, bytes]:
        await self.send(method, path, headers, body)
        assert self.reader is not None
        status, response_headers = await read_head(self.reader)
        data = b"".join([piece async for piece in read_body(self.reader, response_headers)])
        if response_headers.get("connection") == "close":
            await self.close()
        return status, data

    async def stream(
        self, method: str, path: str, headers: dict[str, str], body: Any, started: float
    ) -> tuple[int, float | None, int, str]:
        """(status, seconds to the first delta, deltas, last event) of a server-sent event response."""
        await self.send(method, path, headers, body)
        assert self.reader is not None
        status, response_headers = await read_head(self.reader)
        first_delta = None
        deltas = 0
        last_event = ""
        buffer = b""
        async for piece in read_body(self.reader, response_headers):
            buffer += piece
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                name, _ = sse_event(event)
                if name in ("reply.delta", "delta"):
                    deltas += 1
                    if first_delta is None:
                        first_delta = time.perf_counter() - started
                if name:
                    last_event = name
        if response_headers.get("connection") == "close" or response_headers.get("transfer-encoding") != "chunked":
            await self.close()
        return status, first_delta, deltas, last_event


def sse_event(event: bytes) -> tuple[str, bool]:
    """(event name, whether it carries a delta); the model server's own chunks are named `delta`/`done`."""
    name = ""
    for line in event.split(b"\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"data: ") and not name:
            data = line[6:]
            if data == b"[DONE]":
                return "done", False
            choices = json.loads(data).get("choices") or [{}]
            content = choices[0].get("delta", {}).get("content")
            return ("delta" if content else "chunk"), bool(content)
    return name, name == "reply.delta"


# --- Rows -------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, profile: Profile, workdir: Path, server_env: dict[str, str], before_env: dict[str, str] | None = None
    ) -> None:
        self.profile = profile
        self.before_env = before_env
        self.workdir = workdir
        self.model = ModelServer()
        self.blocking_log = workdir / "blocking.jsonl"
        base_env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_", "REDIS_", "DATABASE_", "GUNICORN_"))
        }
        self.env = {
            **base_env,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LLM_PROVIDER": "openai",
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": self.model.base_url,
            "LLM_MAX_RETRIES": "0",
            "LLM_TIMEOUT_SECONDS": "30",
            # One user drives everything: a per-second window keeps its throttle history (a
            # list the throttle rewrites on every request) as long as production's 600/minute.
            "API_THROTTLE_RATE": "1000000/second",
            "API_MESSAGE_POST_THROTTLE_RATE": "1000000/second",
            # Without DEBUG the server refuses to start without a key of its own.
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "h" * 40,
            "MONGODB_URI": "",
            "REDIS_URL": "",
            "LOG_LEVEL": "WARNING",
            "GUNICORN_LOG_LEVEL": "warning",
            **server_env,
        }
        self.data = Data(workdir, self.env)
        self.auth = {"Authorization": f"Token {self.data.token}"}
        self.servers: dict[str, Server] = {}

    def monitored(self) -> Server:
        """A server like `main` with gevent's blocking monitor on (it traces every greenlet switch: a cost of
        its own, so the other rows are measured without it)."""
        return self.server(
            "monitored",
            GEVENT_MONITOR_THREAD_ENABLE="true",
            GEVENT_MAX_BLOCKING_TIME="0.05",
            GEVENT_MONITOR_PRINT_BLOCKING_REPORTS="false",
            BENCH_BLOCKING_LOG=str(self.blocking_log),
        )

    def blocking(self) -> list[Row]:
        """The largest sweep level on the monitored server, non-streamed and streamed."""
        clients = max(self.profile.sweep)
        return [
            self.sweep_level(self.monitored(), clients, stream=stream, suffix="_monitored") for stream in (False, True)
        ]

    def server(self, name: str, **env: str) -> Server:
        if name not in self.servers:
            self.servers[name] = Server(name, {**self.env, **env}, self.workdir)
        return self.servers[name]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.model.stop()

    def get(self, server: Server, path: str, *, min_seconds: int = 0, **headers: str) -> Callable[..., WrkResult]:
        """A wrk run on `path`; header names are given with `_` for `-`."""
        p = self.profile
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        window = max(p.seconds, min_seconds)
        return lambda seconds=window: wrk(server.url + path, seconds=seconds, connections=p.connections, headers=named)

    def authed(self, server: Server, path: str, **headers: str) -> Callable[..., WrkResult]:
        return self.get(server, path, **self.auth, **headers)

    def row(
        self,
        name: str,
        description: str,
        floor_label: str,
        subject_label: str,
        target: str,
        floor: Callable[..., WrkResult],
        subject: Callable[..., WrkResult],
        **notes: Any,
    ) -> Row:
        base, subj, ratio, ratios = compare(self.profile.rounds, floor, subject)
        row = Row(
            name=name,
            description=description,
            unit="requests/s",
            baseline_label=floor_label,
            subject_label=subject_label,
            baseline=base.rps,
            subject=subj.rps,
            ratio=ratio,
            target=target,
            rounds=self.profile.rounds,
            notes={
                "floor": asdict(base),
                "subject": asdict(subj),
                "round_ratios": [round(r, 3) for r in ratios],
                "load_average": os.getloadavg(),
                **notes,
            },
        )
        report(row)
        return row

    # The rows.

    def floors(self) -> list[Row]:
        main = self.server("main")
        recycling = self.server("recycling", GUNICORN_MAX_REQUESTS="1000", GUNICORN_MAX_REQUESTS_JITTER="100")
        return [
            self.row(
                "floor_drf_get_vs_bare",
                "authenticated DRF GET floor vs the bare Django view, same server",
                "bare Django JSON view",
                "authenticated DRF GET",
                "",
                self.get(main, "/bench/floor/bare/"),
                self.authed(main, "/bench/floor/drf/"),
            ),
            *(
                [
                    self.row(
                        "floor_drf_get_vs_bare_before",
                        f"the same on a server with the previous configuration {self.before_env}",
                        "bare Django JSON view",
                        "authenticated DRF GET",
                        "",
                        self.get(self.server("before", **self.before_env), "/bench/floor/bare/"),
                        self.authed(self.server("before", **self.before_env), "/bench/floor/drf/"),
                    )
                ]
                if self.before_env is not None
                else []
            ),
            self.row(
                "floor_bare_recycling_1000_vs_off",
                "bare view on a server recycling workers every 1000 (+jitter 100) requests vs the default (off)",
                "max_requests=0 (default)",
                "max_requests=1000",
                "1.0 (recycling costs nothing measurable)",
                # A window must outlast a worker's restart (both workers can reach 1000 together
                # and restart at once): a 1 s window inside one measured 0 requests/s. 5 s, as in the full run.
                self.get(main, "/bench/floor/bare/", min_seconds=5),
                self.get(recycling, "/bench/floor/bare/", min_seconds=5),
            ),
        ]

    def hot_reads(self) -> list[Row]:
        main = self.server("main")
        cold = self.server("cold", BENCH_CACHE="dummy")
        interaction = self.data.interaction(model="bench-0s-5w", title="page")
        self.data.add_messages(interaction, 500)
        for n in range(30):
            self.data.interaction(model="bench-0s-5w", title=f"listed {n}")
        page = f"/api/v1/interactions/{interaction}/messages/?limit=50"
        return [
            self.row(
                "interactions_list_cached_vs_drf_floor",
                "GET /interactions/ (20 of 31, served from the cache) vs the authenticated GET floor",
                "authenticated DRF GET",
                "cached list",
                ">= 0.9",
                self.authed(main, "/bench/floor/drf/"),
                self.authed(main, "/api/v1/interactions/"),
            ),
            self.row(
                "interactions_list_cold_vs_drf_floor",
                "the same list with no cache at all (BENCH_CACHE=dummy server) vs that server's floor",
                "authenticated DRF GET (no cache)",
                "cold list",
                "",
                self.authed(cold, "/bench/floor/drf/"),
                self.authed(cold, "/api/v1/interactions/"),
            ),
            self.row(
                "messages_page_cached_vs_drf_floor",
                "GET 50 messages of a 500-message interaction, from the cache, vs the authenticated GET floor",
                "authenticated DRF GET",
                "cached 50-message page",
                ">= 0.8",
                self.authed(main, "/bench/floor/drf/"),
                self.authed(main, page),
            ),
            self.row(
                "messages_page_cold_vs_drf_floor",
                "the same page with no cache (BENCH_CACHE=dummy server) vs that server's floor",
                "authenticated DRF GET (no cache)",
                "cold 50-message page",
                "",
                self.authed(cold, "/bench/floor/drf/"),
                self.authed(cold, page),
            ),
        ]

    def polling(self) -> list[Row]:
        cold = self.server("cold", BENCH_CACHE="dummy")
        main = self.server("main")
        short = self.data.interaction(model="bench-0s-5w", title="short")
        short_last = self.data.add_messages(short, 100)
        long = self.data.interaction(model="bench-0s-5w", title="long")
        started = time.monotonic()
        long_last = self.data.add_messages(long, self.profile.poll_messages)
        seeded = time.monotonic() - started
        rows = [
            self.row(
                f"after_poll_{self.profile.poll_messages}_vs_100_messages",
                f"GET ?after=<newest id> (an empty page: the idle poll), uncached, on {self.profile.poll_messages:,} "
                "vs 100 messages; ratio of throughputs (cost ratio is its inverse)",
                "100 messages",
                f"{self.profile.poll_messages:,} messages",
                "cost <= 1.2x (throughput ratio >= 0.83)",
                self.authed(cold, f"/api/v1/interactions/{short}/messages/?after={short_last}"),
                self.authed(cold, f"/api/v1/interactions/{long}/messages/?after={long_last}"),
                seconds_to_seed=round(seeded, 1),
            ),
        ]
        rows.append(self.cursor_queries(short, short_last, long, long_last))
        etag = self.etag_of(main, f"/api/v1/interactions/{long}/messages/?after={long_last}")
        if etag is None:
            rows.append(
                Row(
                    "poll_304_vs_drf_floor",
                    "If-None-Match poll answered 304",
                    "requests/s",
                    "",
                    "",
                    skipped="the list answers no ETag",
                )
            )
        else:
            rows.append(
                self.row(
                    "poll_304_vs_drf_floor",
                    "GET ?after=<newest id> with If-None-Match: the interaction's ETag (304, no body) vs the floor",
                    "authenticated DRF GET",
                    "304 poll",
                    "",
                    self.authed(main, "/bench/floor/drf/"),
                    self.authed(main, f"/api/v1/interactions/{long}/messages/?after={long_last}", If_None_Match=etag),
                )
            )
        return rows

    def cursor_queries(self, short: str, short_last: str, long: str, long_last: str) -> Row:
        """The `after=` page query alone, in this process: the tie-break OR with and without the seek bound."""
        from django.db.models import Q

        from core.pagination import keyset_filter
        from messages_app.models import Message

        def page(interaction: str, cursor: str, *, seek: bool) -> Callable[[], float]:
            anchor = Message.objects.filter(pk=cursor).values("created_at", "pk").get()
            value, pk = anchor["created_at"], anchor["pk"]
            condition = (
                keyset_filter("created_at", value, pk, forward=True)
                if seek
                else Q(created_at__gt=value) | Q(created_at=value, pk__gt=pk)
            )
            query = Message.objects.filter(interaction_id=interaction).filter(condition).order_by("created_at", "pk")

            def timed() -> float:
                reps = 5 if not seek else 200
                started = time.perf_counter()
                for _ in range(reps):
                    list(query[:51])
                return (time.perf_counter() - started) / reps * 1000

            return timed

        ratios = {}
        for seek in (False, True):
            shorts, longs = [], []
            for _ in range(max(self.profile.rounds, 3)):
                shorts.append(page(short, short_last, seek=seek)())
                longs.append(page(long, long_last, seek=seek)())
            ratios["seek" if seek else "or_only"] = {
                "ms_100": round(statistics.median(shorts), 3),
                f"ms_{self.profile.poll_messages}": round(statistics.median(longs), 3),
                "ratio": round(statistics.median(longs) / statistics.median(shorts), 2),
            }
        row = Row(
            name=f"after_query_{self.profile.poll_messages}_vs_100_messages_or_only_vs_seek",
            description="the after=<newest id> page query alone (ORM, this process): cost on "
            f"{self.profile.poll_messages:,} messages / on 100, before (tie-break OR only) and after (with the "
            "created_at >= bound)",
            unit="cost ratio",
            baseline_label="OR only (before)",
            subject_label="with the seek bound (after)",
            baseline=ratios["or_only"]["ratio"],
            subject=ratios["seek"]["ratio"],
            ratio=ratios["seek"]["ratio"] / ratios["or_only"]["ratio"],
            target="subject <= 1.2",
            rounds=max(self.profile.rounds, 3),
            notes=ratios,
        )
        report(row)
        return row

    def etag_of(self, server: Server, path: str) -> str | None:
        async def fetch() -> str | None:
            connection = Connection(server.port)
            await connection.send("GET", path, self.auth)
            assert connection.reader is not None
            status, headers = await read_head(connection.reader)
            async for _ in read_body(connection.reader, headers):
                pass
            await connection.close()
            return headers.get("etag") if status == 200 else None

        return asyncio.run(fetch())

    def posting(self) -> list[Row]:
        main = self.server("main")
        count = 400
        paths = [
            f"/api/v1/interactions/{self.data.interaction(model='bench-0s-5w', title='post')}/messages/"
            for _ in range(count)
        ]
        script = post_script(self.workdir, "post_message", paths, {"content": USER_TEXT})
        floor_script = post_script(self.workdir, "post_floor", ["/bench/floor/drf/"], {"content": USER_TEXT})
        p = self.profile

        def post(path_script: Path) -> Callable[..., WrkResult]:
            return lambda seconds=p.seconds: wrk(
                main.url + "/", seconds=seconds, connections=p.connections, headers=self.auth, script=path_script
            )

        return [
            self.row(
                "post_message_instant_model_vs_drf_post_floor",
                "POST a user message, the reply from a model server answering at once (openai SDK, real HTTP), "
                "vs the authenticated DRF POST floor (validate a JSON body, insert one row)",
                "authenticated DRF POST, one insert",
                "POST message + reply",
                ">= 0.35",
                post(floor_script),
                post(script),
                interactions_rotated=count,
            )
        ]

    def first_delta(self) -> Row:
        main = self.server("main")
        model = "bench-0.4s-8w"  # a delta every 50 ms, the first 50 ms after the request
        interactions = [self.data.interaction(model=model, title="first delta") for _ in range(8)]

        async def direct() -> float:
            connection = Connection(self.model.port)
            started = time.perf_counter()
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
            _, first, _, _ = await connection.stream("POST", "/v1/chat/completions", {}, body, started)
            await connection.close()
            assert first is not None
            return first

        async def service(index: int) -> float:
            connection = Connection(main.port)
            path = f"/api/v1/interactions/{interactions[index % len(interactions)]}/messages/?stream=true"
            started = time.perf_counter()
            status, first, deltas, last = await connection.stream(
                "POST", path, self.auth, {"content": USER_TEXT}, started
            )
            await connection.close()
            if status != 200 or first is None or last != "reply.completed":
                raise HttpError(f"stream failed: {status} {deltas} deltas, last event {last!r}")
            return first

        asyncio.run(direct())
        asyncio.run(service(0))
        directs: list[float] = []
        services: list[float] = []
        for index in range(self.profile.first_delta_samples):
            if index % 2 == 0:
                directs.append(asyncio.run(direct()) * 1000)
                services.append(asyncio.run(service(index)) * 1000)
            else:
                services.append(asyncio.run(service(index)) * 1000)
                directs.append(asyncio.run(direct()) * 1000)
        base, subj = statistics.median(directs), statistics.median(services)
        row = Row(
            name="first_streamed_delta_service_vs_model",
            description="ms from sending the request to the first delta: through the service (POST ?stream=true, "
            "message stored, reply started) vs straight from the model server",
            unit="ms",
            baseline_label="model server's own first delta",
            subject_label="service's first reply.delta",
            baseline=base,
            subject=subj,
            ratio=subj / base,
            target="within 10 ms of the model's own",
            rounds=self.profile.first_delta_samples,
            notes={
                "difference_ms_median": round(
                    statistics.median(s - d for s, d in zip(services, directs, strict=True)), 2
                ),
                "service_p90_ms": round(sorted(services)[int(len(services) * 0.9) - 1], 2),
                "load_average": os.getloadavg(),
            },
        )
        report(row)
        return row

    def sweep(self, *, stream: bool) -> list[Row]:
        """Each level on the server as configured, and (with --before-env) on the previous configuration."""
        servers = [("", self.server("main"))]
        if self.before_env is not None:
            servers.append(("_before", self.server("before", **self.before_env)))
        rows = []
        for level, clients in enumerate(self.profile.sweep):
            order = servers if level % 2 == 0 else servers[::-1]
            for suffix, server in order:
                rows.append(self.sweep_level(server, clients, stream=stream, suffix=suffix))
        return rows

    def sweep_level(self, server: Server, clients: int, *, stream: bool, suffix: str) -> Row:
        p = self.profile
        model = f"bench-{p.model_seconds:g}s-{p.stream_deltas}w"
        interactions = [self.data.interaction(model=model, title="sweep") for _ in range(clients)]
        before = {"gunicorn": cpu_seconds(server.pids()), "model": cpu_seconds([self.model.process.pid])}
        load_before = os.times()
        started = time.monotonic()
        outcome = asyncio.run(self.closed_loop(server, interactions, stream=stream))
        wall = time.monotonic() - started
        load_after = os.times()
        cpu = {
            "gunicorn": round((cpu_seconds(server.pids()) - before["gunicorn"]) / wall * 100, 1),
            "model_server": round((cpu_seconds([self.model.process.pid]) - before["model"]) / wall * 100, 1),
            "load_generator": round(
                ((load_after.user - load_before.user) + (load_after.system - load_before.system)) / wall * 100, 1
            ),
        }
        time.sleep(1)  # Requests cut off by the window's end have finished.
        in_progress = self.data.in_progress(interactions)
        ideal = clients / p.model_seconds
        latencies = sorted(outcome["latencies"])
        row = Row(
            name=f"in_flight_{'streamed' if stream else 'non_streamed'}_{clients}_clients{suffix}",
            description=f"{clients} clients, each POSTing a message and waiting for the whole reply, again and "
            f"again, to a {p.model_seconds:g} s model"
            + (f" streaming {p.stream_deltas} deltas" if stream else "")
            + (f"; server env {self.before_env}" if suffix == "_before" else "")
            + ("; gevent's blocking monitor on" if suffix == "_monitored" else ""),
            unit="replies/s",
            baseline_label=f"ideal: {clients} clients / {p.model_seconds:g} s",
            subject_label="completed replies/s",
            baseline=ideal,
            subject=outcome["throughput"],
            ratio=outcome["throughput"] / ideal,
            target=">= 0.75 of ideal, 0 errors, 0 left in_progress" if clients == max(p.sweep) and not suffix else "",
            rounds=1,
            notes={
                "p50_s": round(statistics.median(latencies), 3) if latencies else None,
                "p99_s": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 3) if latencies else None,
                "completed": outcome["completed"],
                "errors": outcome["errors"],
                "error_kinds": outcome["error_kinds"],
                "left_in_progress": in_progress,
                "cpu_percent": cpu,
                "load_average": os.getloadavg(),
                "worker_files": {pid: open_files(pid) for pid in server.workers()},
            },
        )
        report(row)
        return row

    async def closed_loop(
        self, server: Server, interactions: list[str], *, stream: bool, during: Any = None
    ) -> dict[str, Any]:
        """Every client POSTs to its own interaction and waits for the reply, again and again.

        `during`, if given, is awaited alongside the clients (the crash experiment).
        """
        p = self.profile
        clients = len(interactions)
        # Long enough for a fresh server's first replies, which load the reply path (and, on the
        # monitored server, run traced): a window that opens before they finish counts none.
        warmup = max(p.model_seconds * 2, 3.0)
        start = time.monotonic()
        window = (start + warmup, start + warmup + p.sweep_seconds)
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        completed = 0

        async def client(index: int, interaction: str) -> None:
            nonlocal completed
            await asyncio.sleep(p.model_seconds * index / clients)  # spread the first requests over one reply
            connection = Connection(server.port)
            path = f"/api/v1/interactions/{interaction}/messages/" + ("?stream=true" if stream else "")
            while time.monotonic() < window[1]:
                began = time.monotonic()
                try:
                    if stream:
                        status, _, _, last = await connection.stream(
                            "POST", path, self.auth, {"content": USER_TEXT}, time.perf_counter()
                        )
                        ok = status == 200 and last == "reply.completed"
                        kind = f"{status} {last}"
                    else:
                        status, body = await connection.request("POST", path, self.auth, {"content": USER_TEXT})
                        ok = status == 201
                        kind = f"{status} {body[:80]!r}"
                except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
                    ok, kind = False, type(exc).__name__
                    await connection.close()
                ended = time.monotonic()
                if ok and window[0] <= ended <= window[1]:
                    completed += 1
                    latencies.append(ended - began)
                if not ok:
                    errors[kind] += 1
                    await asyncio.sleep(0.1)
            await connection.close()

        await asyncio.gather(*(client(i, pk) for i, pk in enumerate(interactions)), *([during] if during else []))
        return {
            "throughput": completed / p.sweep_seconds,
            "completed": completed,
            "latencies": latencies,
            "errors": sum(errors.values()),
            "error_kinds": dict(errors.most_common(5)),
        }

    def crash(self) -> Row:
        """What a worker crash costs at capacity: SIGKILL one worker while every client waits on a reply."""
        import signal

        p = self.profile
        server = self.server("crash")
        clients = max(p.sweep)
        model = f"bench-{p.model_seconds:g}s-{p.stream_deltas}w"
        interactions = [self.data.interaction(model=model, title="crash") for _ in range(clients)]
        killed: dict[str, Any] = {}

        async def kill_one_worker() -> None:
            await asyncio.sleep(p.model_seconds * 2 + p.sweep_seconds / 2)
            workers = server.workers()
            victim = max(workers, key=lambda pid: open_files(pid).get("client", 0))
            in_progress = self.data.in_progress(interactions)
            killed.update({"pid": victim, "its_files": open_files(victim), "in_progress_before": in_progress})
            os.kill(victim, signal.SIGKILL)

        outcome = asyncio.run(self.closed_loop(server, interactions, stream=False, during=kill_one_worker()))
        left = self.data.in_progress(interactions)
        time.sleep(2)  # The master notices the death (child_exit) and starts a new worker.
        from messages_app.models import Message

        statuses = dict(
            Counter(
                Message.objects.filter(interaction_id__in=interactions, role="assistant").values_list(
                    "status", flat=True
                )
            )
        )
        row = Row(
            name=f"worker_crash_at_{clients}_in_flight",
            description=f"{clients} clients on a {p.model_seconds:g} s model (non-streamed); one of the workers "
            "is SIGKILLed halfway: the requests it held fail, their replies are abandoned",
            unit="replies",
            baseline_label="replies completed in the window",
            subject_label="client errors (requests the dead worker held)",
            baseline=outcome["completed"],
            subject=outcome["errors"],
            rounds=1,
            notes={
                "killed": killed,
                "error_kinds": outcome["error_kinds"],
                "left_in_progress_right_after": left,
                "left_in_progress_2s_later": self.data.in_progress(interactions),
                "reply_statuses_afterwards": statuses,
            },
        )
        row.ratio = (row.subject or 0) / clients
        report(row)
        return row

    def long_run(self) -> Row:
        """Files and memory of each worker, sampled while clients come and go for a while."""
        main = self.server("main")
        p = self.profile
        model = f"bench-{p.model_seconds / 4:g}s-5w"
        interactions = [self.data.interaction(model=model, title="long run") for _ in range(50)]
        samples: list[dict[str, Any]] = []

        async def run() -> int:
            deadline = time.monotonic() + p.long_run_seconds
            done = 0

            async def client(interaction: str) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    # A new connection each time: clients come and go.
                    connection = Connection(main.port)
                    status, _ = await connection.request(
                        "POST", f"/api/v1/interactions/{interaction}/messages/", self.auth, {"content": USER_TEXT}
                    )
                    await connection.close()
                    done += status == 201

            async def sample() -> None:
                while time.monotonic() < deadline:
                    samples.append({pid: {**open_files(pid), "rss_kib": rss_kib(pid)} for pid in main.workers()})
                    await asyncio.sleep(max(p.long_run_seconds / 20, 0.2))

            await asyncio.gather(sample(), *(client(pk) for pk in interactions))
            return done

        settled_before = {pid: open_files(pid) for pid in main.workers()}
        done = asyncio.run(run())
        time.sleep(1)
        settled_after = {pid: {**open_files(pid), "rss_kib": rss_kib(pid)} for pid in main.workers()}
        peak = max((s[pid]["total"] for s in samples for pid in s), default=0)
        row = Row(
            name="long_run_worker_files_after_vs_before",
            description=f"open files of the workers, summed, before and after {p.long_run_seconds:g} s of 50 clients "
            "each opening a new connection per POST; the provider's kept-alive connections (at most "
            "LLM_MAX_CONCURRENT_CALLS per worker) are counted apart, in the notes",
            unit="open files",
            baseline_label="before",
            subject_label="after (without kept-alive provider connections)",
            baseline=sum(v["total"] - v.get("upstream", 0) for v in settled_before.values()),
            subject=sum(v["total"] - v.get("upstream", 0) for v in settled_after.values()),
            rounds=1,
            notes={
                "replies": done,
                "peak_files_one_worker": peak,
                "before": settled_before,
                "after": settled_after,
                "rss_kib_first_samples": samples[0] if samples else {},
                "rss_kib_last_samples": samples[-1] if samples else {},
            },
        )
        row.ratio = (row.subject or 0) / row.baseline if row.baseline else None
        report(row)
        return row

    def blocking_summary(self) -> dict[str, Any]:
        """What blocked the gevent loop, grouped by the innermost frame of the project or a library."""
        if not self.blocking_log.exists():
            return {"reports": 0}
        reports = [json.loads(line) for line in self.blocking_log.read_text().splitlines() if line.strip()]
        places: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        for entry in reports:
            frames = [f for f in entry["stack"] if "/gevent/" not in f and "blocking.py" not in f]
            place = frames[-1] if frames else entry["stack"][-1]
            places[place] += 1
            examples.setdefault(place, entry["stack"][-12:])
        threshold = reports[0]["threshold"] if reports else None
        return {
            "reports": len(reports),
            "threshold_seconds": threshold,
            "by_place": dict(places.most_common(10)),
            "stacks": {place: examples[place] for place, _ in places.most_common(5)},
        }


def report(row: Row) -> None:
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
    print(
        f"{row.name}: {fmt(row.baseline)} -> {fmt(row.subject)} {row.unit}, ratio {ratio}"
        + (f" (target {row.target})" if row.target else ""),
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def bench_dir() -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="chat-http-bench-"))
    try:
        yield workdir
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="minimal iterations (smoke test)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--server-env", action="append", default=[], help="NAME=VALUE for every server started")
    parser.add_argument("--only", action="append", default=[], help="run only these steps")
    parser.add_argument(
        "--before-env",
        action="append",
        default=None,
        help="NAME=VALUE of a previous server configuration: the floors and the sweep also run on it, interleaved",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: run scripts/install-system-deps (Debian package wrk)", file=sys.stderr)
        return 2
    profile = QUICK if args.quick else DEFAULT
    server_env = dict(item.split("=", 1) for item in args.server_env)
    started = time.monotonic()
    rows: list[Row] = []
    load_before = os.getloadavg()
    with bench_dir() as workdir:
        before_env = dict(item.split("=", 1) for item in args.before_env) if args.before_env else None
        bench = Bench(profile, workdir, server_env, before_env)
        try:
            steps: list[tuple[str, Callable[[], list[Row]]]] = [
                ("floors", bench.floors),
                ("hot_reads", bench.hot_reads),
                ("polling", bench.polling),
                ("posting", bench.posting),
                ("first_delta", lambda: [bench.first_delta()]),
                ("sweep", lambda: bench.sweep(stream=False) + bench.sweep(stream=True)),
                ("long_run", lambda: [bench.long_run()]),
                ("crash", lambda: [bench.crash()]),
                ("blocking", bench.blocking),
            ]
            for name, step in steps:
                if args.only and name not in args.only:
                    continue
                step_started = time.monotonic()
                rows.extend(step())
                print(f"[{time.monotonic() - step_started:5.1f}s] {name}", file=sys.stderr, flush=True)
            blocking = bench.blocking_summary()
            gunicorn_conf = {server.name: {"workers": len(server.workers())} for server in bench.servers.values()}
        finally:
            bench.stop()
    elapsed = time.monotonic() - started
    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "profile": asdict(profile),
        "server_env": server_env,
        "before_env": args.before_env,
        "servers": gunicorn_conf,
        "elapsed_seconds": round(elapsed, 1),
        "machine": {
            **machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "gevent_blocking": blocking,
        "benchmarks": [asdict(row) for row in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({"gevent_blocking": blocking}, indent=2), file=sys.stderr)
    print(f"{len(rows)} rows in {elapsed:.0f}s, written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
