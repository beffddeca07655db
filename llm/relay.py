"""The live relay of a reply's text, from the worker generating it to its followers, over Redis Streams.

Contracts:
- The generating worker never waits on Redis. relay_publish() puts the text on an in-process
  queue and returns; one background thread per process drains it, merges the deltas of a
  reply that arrived meanwhile into one entry and writes a batch with one pipeline. Each
  stream is bounded (MAXLEN ~REPLY_RELAY_MAX_ENTRIES) and expires (REPLY_RELAY_TTL_SECONDS
  after its last write).
- A Redis that is down or black-holed costs the publisher at most one socket timeout, after
  which a circuit breaker drops further text for REPLY_RELAY_BREAKER_SECONDS instead of
  trying again. Dropped text is not lost: it is in the stored progress, and every entry says
  at which character of the reply it starts, so a follower sees a gap and reads the database.
- Followers read with a Redis client of their own (the cache client's short socket timeout
  is not for blocking reads), behind a breaker of its own. relay_read() raises
  RelayUnavailable rather than hang; the caller falls back to the stored progress.
- Entry ids are Redis Stream ids ("1700000000000-0"), increasing within a stream; a stream
  belongs to one attempt at one reply, so a retry starts a fresh stream.
"""

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from llm.metrics import relay_dropped_total, relay_entries_total, relay_errors_total

logger = logging.getLogger(__name__)

KEY_PREFIX = "chat:reply-relay"
# How many queued items one flush takes at most (one pipeline round trip).
FLUSH_BATCH_MAX = 500


class RelayUnavailable(Exception):
    """The relay cannot be read now (not configured, Redis down, breaker open)."""


@dataclass(frozen=True)
class RelayEntry:
    """One entry of a reply's stream: text starting at character `offset`, or the end mark."""

    entry_id: str
    offset: int
    text: str = ""
    end: bool = False


@dataclass(frozen=True)
class _Item:
    key: str
    offset: int
    text: str
    end: bool


class CircuitBreaker:
    """After a failure, says "do not try" for `open_seconds`; then lets calls try again."""

    def __init__(self, *, open_seconds: Callable[[], float]) -> None:
        self._open_seconds = open_seconds
        self._open_until = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self._open_until

    def failed(self) -> None:
        self._open_until = time.monotonic() + self._open_seconds()

    def reset(self) -> None:
        self._open_until = 0.0


def relay_url() -> str:
    return str(settings.REPLY_RELAY_REDIS_URL)


def relay_enabled() -> bool:
    return bool(relay_url())


def relay_stream_key(*, reply_id: Any, attempt: str) -> str:
    return f"{KEY_PREFIX}:{reply_id}:{attempt}"


class RelayPublisher:
    """The per-process writer: a bounded queue and one daemon thread that flushes it in batches."""

    def __init__(self) -> None:
        self.breaker = CircuitBreaker(open_seconds=lambda: settings.REPLY_RELAY_BREAKER_SECONDS)
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._client: redis.Redis | None = None
        self._client_url = ""

    def publish(self, item: _Item) -> None:
        """Queue `item` for the background thread; never blocks, drops while the breaker is open."""
        if not self.breaker.allows():
            relay_dropped_total.inc()
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            relay_dropped_total.inc()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued so far was written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_thread(self) -> None:
        # After a fork (gunicorn workers) the parent's thread does not exist in the child.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=settings.REPLY_RELAY_QUEUE_MAX)
            self._client = None
            thread = threading.Thread(target=self._run, args=(self._queue,), name="reply-relay", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def _run(self, items: "queue.Queue[_Item]") -> None:
        while True:
            batch = [items.get()]
            while len(batch) < FLUSH_BATCH_MAX:
                try:
                    batch.append(items.get_nowait())
                except queue.Empty:
                    break
            try:
                self._flush(batch)
            except Exception:
                logger.exception("reply relay flush failed")
            finally:
                for _ in batch:
                    items.task_done()

    def _flush(self, batch: list[_Item]) -> None:
        if not self.breaker.allows():
            relay_dropped_total.inc(len(batch))
            return
        entries = _merge(batch)
        try:
            pipeline = self._writer().pipeline(transaction=False)
            for item in entries:
                fields: dict[bytes | bytearray | memoryview | str | int | float, Any] = {
                    "o": item.offset,
                    "d": item.text,
                }
                if item.end:
                    fields["e"] = 1
                pipeline.xadd(item.key, fields, maxlen=settings.REPLY_RELAY_MAX_ENTRIES, approximate=True)
            for key in {item.key for item in entries}:
                pipeline.expire(key, settings.REPLY_RELAY_TTL_SECONDS)
            pipeline.execute()
        except (redis.RedisError, OSError):
            self.breaker.failed()
            relay_errors_total.labels("write").inc()
            relay_dropped_total.inc(len(batch))
            logger.warning("reply relay: Redis write failed; not trying for %ss", settings.REPLY_RELAY_BREAKER_SECONDS)
            return
        relay_entries_total.inc(len(entries))

    def _writer(self) -> redis.Redis:
        url = relay_url()
        if self._client is None or self._client_url != url:
            timeout = settings.REPLY_RELAY_SOCKET_TIMEOUT_SECONDS
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            self._client_url = url
        return self._client


def _merge(batch: list[_Item]) -> list[_Item]:
    """Join consecutive pieces of text of the same stream into one entry (fewer, larger writes)."""
    merged: list[_Item] = []
    last_of_key: dict[str, int] = {}
    for item in batch:
        index = last_of_key.get(item.key, -1)
        if index >= 0:
            previous = merged[index]
            if not (previous.end or item.end) and previous.offset + len(previous.text) == item.offset:
                merged[index] = _Item(previous.key, previous.offset, previous.text + item.text, False)
                continue
        last_of_key[item.key] = len(merged)
        merged.append(item)
    return merged


class RelayReader:
    """The per-process reader: its own connection pool, sized for blocking reads, and a breaker."""

    def __init__(self) -> None:
        self.breaker = CircuitBreaker(open_seconds=lambda: settings.REPLY_RELAY_BREAKER_SECONDS)
        self._client: redis.Redis | None = None
        self._client_key: tuple[Any, ...] = ()
        self._lock = threading.Lock()

    def read(self, *, key: str, after: str, block_seconds: float) -> list[RelayEntry]:
        """Entries after `after` ("0" for all), waiting up to `block_seconds` for the first one.

        Raises RelayUnavailable when Redis cannot answer; the breaker then keeps further reads
        from trying for a while.
        """
        if not relay_enabled() or not self.breaker.allows():
            raise RelayUnavailable("the reply relay is not available")
        try:
            block_ms = max(1, int(min(block_seconds, settings.REPLY_STREAM_WAIT_SECONDS) * 1000))
            answer = self._reader().xread({key: after}, count=1000, block=block_ms)
        except redis.exceptions.MaxConnectionsError as exc:
            # Too many followers in this process: this one reads the database instead.
            relay_errors_total.labels("pool").inc()
            raise RelayUnavailable("no free relay connection") from exc
        except (redis.RedisError, OSError) as exc:
            self.breaker.failed()
            relay_errors_total.labels("read").inc()
            raise RelayUnavailable(str(exc)) from exc
        streams: list[tuple[Any, list[tuple[Any, dict[bytes, bytes]]]]] = answer or []  # type: ignore[assignment]
        return [_entry(entry_id, fields) for _stream, rows in streams for entry_id, fields in rows]

    def _reader(self) -> redis.Redis:
        config = (
            relay_url(),
            settings.REPLY_RELAY_SOCKET_TIMEOUT_SECONDS,
            settings.REPLY_STREAM_WAIT_SECONDS,
            settings.REPLY_RELAY_MAX_CONNECTIONS,
        )
        with self._lock:
            if self._client is None or self._client_key != config:
                url, connect_timeout, wait, max_connections = config
                self._client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=connect_timeout,
                    # A blocking read keeps the socket silent for up to `wait` seconds;
                    # only longer than that, and a margin, means Redis is not answering.
                    socket_timeout=wait + 1.0,
                    max_connections=max_connections,
                )
                self._client_key = config
            return self._client


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> RelayEntry:
    return RelayEntry(
        entry_id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        offset=int(fields[b"o"]),
        text=fields.get(b"d", b"").decode(),
        end=b"e" in fields,
    )


publisher = RelayPublisher()
reader = RelayReader()


def relay_publish(*, reply_id: Any, attempt: str, offset: int, text: str) -> None:
    """Relay `text`, which starts at character `offset` of the reply. Returns at once."""
    if text and relay_enabled():
        publisher.publish(_Item(relay_stream_key(reply_id=reply_id, attempt=attempt), offset, text, False))


def relay_publish_end(*, reply_id: Any, attempt: str, offset: int) -> None:
    """Mark the attempt finished (its outcome is stored): followers stop waiting for text."""
    if relay_enabled():
        publisher.publish(_Item(relay_stream_key(reply_id=reply_id, attempt=attempt), offset, "", True))


def relay_read(*, reply_id: Any, attempt: str, after: str, block_seconds: float) -> list[RelayEntry]:
    return reader.read(
        key=relay_stream_key(reply_id=reply_id, attempt=attempt), after=after, block_seconds=block_seconds
    )
