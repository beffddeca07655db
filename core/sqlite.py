"""SQLite as a server's database: WAL, and waiting for the write lock without stopping the process.

SQLite's own busy handler (the `timeout` connection option) sleeps inside the C library: on
a gevent worker that stops every request of the process, not only the one that waits, for
as long as another process holds the write lock. So the library's handler is off
(`timeout` 0: a locked database fails at once) and a statement that met the lock is retried
here, sleeping with `time.sleep`, which gevent makes yield to the other requests.

Only statements run in autocommit mode are retried, and the `BEGIN` that opens an atomic
block: a statement refused with SQLITE_BUSY did nothing, so running it again is safe. Inside
a transaction nothing is retried (atomic blocks take the lock up front, `BEGIN IMMEDIATE`,
so their statements do not meet it). The pragmas a new connection runs are retried likewise
(they are not Django's `init_command`, which would fail at once).
"""

import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper

FIRST_PAUSE_SECONDS = 0.001
LONGEST_PAUSE_SECONDS = 0.02
# WAL: readers never wait for the writer. synchronous=NORMAL: a commit is not fsynced (WAL
# stays consistent; a power cut may lose the last commits, a crashed process loses nothing).
CONNECTION_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")

T = TypeVar("T")


def while_locked(run: Callable[[], T], *, retry: Callable[[], bool] = lambda: True) -> T:
    """`run()`, run again while it fails because the database is locked (and `retry()`), up to
    SQLITE_BUSY_TIMEOUT_SECONDS, pausing cooperatively in between."""
    deadline = time.monotonic() + settings.SQLITE_BUSY_TIMEOUT_SECONDS
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return run()
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_lock_wait(exc) or not retry() or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


def _is_lock_wait(exc: Exception) -> bool:
    # "database is locked": another connection holds the write lock (SQLITE_BUSY). "database
    # table is locked": another connection of this process holds a table lock of a shared-cache
    # database (SQLITE_LOCKED; the tests' in-memory database). Either way the statement did nothing.
    return str(exc) == "database is locked" or str(exc).startswith("database table is locked")


def wait_while_locked(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """An execute wrapper: run the statement, retrying it while the database is locked."""
    connection = context["connection"]
    return while_locked(lambda: execute(sql, params, many, context), retry=lambda: connection.autocommit)


def configure(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """A `connection_created` receiver: a new SQLite connection runs CONNECTION_PRAGMAS and
    waits for the write lock with wait_while_locked."""
    if connection.vendor != "sqlite":
        return
    for pragma in CONNECTION_PRAGMAS:
        while_locked(partial(connection.connection.execute, pragma))
    if wait_while_locked not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, wait_while_locked)
