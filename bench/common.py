"""What the benchmarks (and the test suite's process helpers) share: ports, child servers,
the throwaway Django settings, and interleaved measurement.

Imported as `bench.common` (each benchmark puts the repository root on sys.path first).
"""

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

A = TypeVar("A")
B = TypeVar("B")


@dataclass
class Row:
    """One measurement of a results file: `subject` against a `baseline` measured in the
    same run, their ratio, and how it was measured (`notes`); or why it was `skipped`."""

    name: str
    description: str
    unit: str
    baseline_label: str
    subject_label: str
    baseline: float | None = None
    subject: float | None = None
    ratio: float | None = None
    target: str = ""
    rounds: int = 0
    skipped: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class LineServer:
    """A child Python server (`script` with `args`) that prints its base URL as its first line
    of output and stops when its stdin closes."""

    def __init__(self, script: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout is None:
            raise RuntimeError(f"{script.name} has no output to read its address from")
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"{script.name} did not start: {self.base_url!r}")

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=10)


def django_env(database: Path, **overrides: str) -> dict[str, str]:
    """Settings of a benchmark's Django on a throwaway SQLite file (not the developer's .env):
    no DEBUG, offline provider, no MongoDB, no Redis."""
    return {
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_DEBUG": "false",
        # Without DEBUG the settings refuse to start on their built-in development key.
        "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "b" * 40,
        # The API test client talks to host "testserver".
        "DJANGO_ALLOWED_HOSTS": "testserver,localhost",
        "LLM_PROVIDER": "offline",
        # Empty, not absent: settings.py reads .env without overwriting what is set here.
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "MONGODB_URI": "",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


def django_setup_in_process(database: Path, **overrides: str) -> None:
    """Set up Django in this process with django_env()."""
    os.environ.update(django_env(database, **overrides))
    import django

    django.setup()


def interleaved(first: Callable[[], A], second: Callable[[], B], rounds: int) -> list[tuple[A, B]]:
    """Measure `first` and `second` `rounds` times each, alternating which goes first (so that
    neither always runs on a warmer or a busier machine); returns the pairs in order."""
    pairs: list[tuple[A, B]] = []
    for index in range(rounds):
        if index % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        pairs.append((a, b))
    return pairs


def fmt(value: float | None) -> str:
    """A figure of a results table: thousands grouped from 100 up, three digits below."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def machine() -> dict[str, Any]:
    """What a result file says about the machine it was measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
