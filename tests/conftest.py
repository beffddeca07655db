import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bench.common import free_port, wait_for_port
from messages_app.claim_finaliser import claim_finaliser
from tests.factories import InteractionFactory, UserFactory
from tests.fake_openai import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
# Set: the whole suite runs on that MongoDB server (pytest-django creates test_<name> there).
MONGODB_URI = os.environ.get("MONGODB_URI", "")


def pytest_configure(config: pytest.Config) -> None:
    # The code host's MongoDB job sets REQUIRE_MONGODB, so that a settings mistake cannot
    # quietly turn its run into one more SQLite run.
    engine = django_settings.DATABASES["default"]["ENGINE"]
    if os.environ.get("REQUIRE_MONGODB") and engine != "django_mongodb_backend":
        raise pytest.UsageError(f"REQUIRE_MONGODB is set but the suite would run on {engine}: set MONGODB_URI")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On MongoDB, skip the tests marked sqlite_only, with the reason the marker gives."""
    if django_settings.DATABASES["default"]["ENGINE"] != "django_mongodb_backend":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: sqlite_only needs a reason")
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


# --- A real gunicorn (the repo's gunicorn.conf.py) in a child process -------------------------


class Served(NamedTuple):
    process: "subprocess.Popen[bytes]"
    port: int
    token: str


def openai_env(server: FakeOpenAIServer, *, timeout_seconds: int = 10) -> dict[str, str]:
    """A child's settings for the loopback model server (tests/fake_openai.py)."""
    return {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": server.base_url,
        "LLM_TIMEOUT_SECONDS": str(timeout_seconds),
    }


def demo_token(env: dict[str, str]) -> str:
    """Migrate the child's database and create the demo user (manage.py); its API token."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    created = subprocess.run(
        [*manage, "demo_user"], env=env, check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout
    return next(line.split()[-1] for line in created.splitlines() if line.startswith("token:"))


def gunicorn_start(
    env: dict[str, str], port: int, *options: str, output: IO[bytes] | None = None, timeout: float = 20
) -> "subprocess.Popen[bytes]":
    """Start gunicorn with gunicorn.conf.py and `options` on 127.0.0.1:`port`; return once it
    listens. Its output goes to `output` (stdout and stderr), or nowhere."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"),
            *options,
            "chatproject.wsgi:application",
        ],
        env=env,
        cwd=ROOT,
        stdout=output if output is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=timeout)
    except TimeoutError:
        process.terminate()
        process.wait(timeout=30)
        raise
    return process


def http_json(
    port: int, token: str, method: str, path: str, body: dict | None = None, *, timeout: float = 30
) -> tuple[int, dict]:  # type: ignore[type-arg]
    """One JSON request to 127.0.0.1:`port` as `token`'s user, on a connection of its own: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else {}


@contextmanager
def gunicorn_serving(
    env: dict[str, str], *options: str, output: IO[bytes] | None = None, timeout: float = 20
) -> Iterator[Served]:
    """gunicorn on a free port over a migrated database with the demo user, stopped afterwards."""
    token = demo_token(env)
    port = free_port()
    process = gunicorn_start(env, port, *options, output=output, timeout=timeout)
    try:
        yield Served(process, port, token)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(autouse=True)
def hermetic_settings(settings):  # type: ignore[no-untyped-def]
    """Tests never reach a provider or cache configured in the developer's .env."""
    settings.LLM_PROVIDER = "offline"
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
    settings.REPLY_RELAY_REDIS_URL = ""
    # The claim finaliser's thread would write from its own connection in the middle of other
    # tests; tests/test_claim_finaliser.py turns it on for itself.
    settings.LLM_REPLY_FINALISE_RETRY_SECONDS = 3600
    # Static files as found in the apps, whether or not collectstatic ran in this checkout.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    cache.clear()
    yield settings
    claim_finaliser.clear()


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="mallory")


def client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user) -> APIClient:  # type: ignore[no-untyped-def]
    """An API client authenticated as `user` with a real token."""
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:  # type: ignore[no-untyped-def]
    return client_for(other_user)


@pytest.fixture
def interaction(user):  # type: ignore[no-untyped-def]
    return InteractionFactory(owner=user, prompt="You are terse.", model_name="test-model")


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_openai_server, settings) -> FakeOpenAIServer:  # type: ignore[no-untyped-def]
    """Point the service's real OpenAI SDK client at the loopback fake."""
    fake_openai_server.reset()
    settings.LLM_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_openai_server.base_url
    settings.LLM_TIMEOUT_SECONDS = 1.5
    settings.LLM_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.LLM_MAX_RETRIES = 0
    return fake_openai_server


class RedisProcess:
    """A real redis-server on a loopback port that a test can stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/install-system-deps (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "RedisProcess":
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real redis-server for the whole session."""
    server = RedisProcess().start()
    yield server.url
    server.cleanup()


@pytest.fixture
def redis_process(settings) -> Iterator[RedisProcess]:  # type: ignore[no-untyped-def]
    """A redis-server of this test's own, configured as the cache, for outage tests."""
    server = RedisProcess().start()
    settings.CACHES = redis_cache_settings(server.url)
    yield server
    server.cleanup()


def redis_cache_settings(url: str) -> dict:  # type: ignore[type-arg]
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "test",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
        }
    }


@pytest.fixture
def redis_cache(redis_server, settings):  # type: ignore[no-untyped-def]
    settings.CACHES = redis_cache_settings(redis_server)
    cache.clear()
    return redis_server


@pytest.fixture
def subprocess_env(tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Environment for running this project's manage.py or gunicorn in a child process, on a
    database of its own: a SQLite file in tmp_path or, when the suite runs on MongoDB, a new
    database on that server, dropped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "DJANGO_", "MONGODB_"))}
    env.update(
        {
            # The tests' key (pyproject.toml): without DEBUG the settings have no key of their own.
            "DJANGO_SECRET_KEY": os.environ["DJANGO_SECRET_KEY"],
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        }
    )
    if not MONGODB_URI:
        yield {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
        return
    from pymongo import MongoClient

    name = f"chat_child_{uuid.uuid4().hex[:12]}"
    # DATABASE_URL too, for the tests that set MONGODB_URI empty for a child of their own.
    sqlite = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    try:
        yield {**env, "DATABASE_URL": sqlite, "MONGODB_URI": MONGODB_URI, "MONGODB_NAME": name}
    finally:
        with MongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(name)
