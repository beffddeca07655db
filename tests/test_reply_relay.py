"""The Redis Streams relay of a reply's text, against a real redis-server, a stopped one and a black hole."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from llm import relay
from llm.relay import RelayUnavailable, relay_publish, relay_publish_end, relay_read, relay_stream_key
from tests.conftest import RedisProcess


@pytest.fixture
def fresh_relay(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.REPLY_RELAY_BREAKER_SECONDS = 30
    settings.REPLY_RELAY_SOCKET_TIMEOUT_SECONDS = 0.3
    settings.REPLY_STREAM_WAIT_SECONDS = 0.5
    relay.publisher.breaker.reset()
    relay.reader.breaker.reset()
    yield
    relay.publisher.wait_idle(5)
    relay.publisher.breaker.reset()
    relay.reader.breaker.reset()


@pytest.fixture
def relay_redis(redis_server, settings, fresh_relay) -> str:  # type: ignore[no-untyped-def]
    settings.REPLY_RELAY_REDIS_URL = redis_server
    return redis_server


class BlackHole:
    """A TCP port that accepts connections and never answers: a Redis lost behind a firewall."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def black_hole(settings, fresh_relay) -> Iterator[BlackHole]:  # type: ignore[no-untyped-def]
    hole = BlackHole()
    settings.REPLY_RELAY_REDIS_URL = f"redis://127.0.0.1:{hole.port}/0"
    yield hole
    hole.close()


def test_published_text_is_read_back_with_its_offsets_and_the_end_mark(relay_redis):
    relay_publish(reply_id="r1", attempt="a1", offset=0, text="Hello ")
    relay_publish(reply_id="r1", attempt="a1", offset=6, text="world")
    relay_publish_end(reply_id="r1", attempt="a1", offset=11)
    assert relay.publisher.wait_idle(5)

    entries = relay_read(reply_id="r1", attempt="a1", after="0", block_seconds=0.1)

    assert "".join(entry.text for entry in entries) == "Hello world"
    assert next(entry.offset for entry in entries if entry.text) == 0
    assert entries[-1].end
    assert entries[-1].offset == 11
    ids = [entry.entry_id for entry in entries]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


def test_reading_after_an_entry_id_gives_only_the_entries_after_it(relay_redis):
    relay_publish(reply_id="r2", attempt="a1", offset=0, text="one ")
    assert relay.publisher.wait_idle(5)
    relay_publish(reply_id="r2", attempt="a1", offset=4, text="two")
    assert relay.publisher.wait_idle(5)
    first = relay_read(reply_id="r2", attempt="a1", after="0", block_seconds=0.1)

    rest = relay_read(reply_id="r2", attempt="a1", after=first[0].entry_id, block_seconds=0.1)

    assert [entry.text for entry in rest] == ["two"]
    assert rest[0].offset == 4


def test_a_retry_attempt_has_a_stream_of_its_own(relay_redis):
    relay_publish(reply_id="r3", attempt="first", offset=0, text="old text")
    relay_publish(reply_id="r3", attempt="second", offset=0, text="new")
    assert relay.publisher.wait_idle(5)

    assert [e.text for e in relay_read(reply_id="r3", attempt="second", after="0", block_seconds=0.1)] == ["new"]


def test_a_blocking_read_wakes_up_when_text_is_published(relay_redis):
    got: list[str] = []

    def follow() -> None:
        got.extend(e.text for e in relay_read(reply_id="r4", attempt="a", after="$", block_seconds=5))

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.2)
    relay_publish(reply_id="r4", attempt="a", offset=0, text="live")
    follower.join(timeout=10)

    assert got == ["live"]


def test_deltas_queued_together_are_written_as_one_entry(relay_redis):
    items = [relay._Item(relay_stream_key(reply_id="r5", attempt="a"), i, "x", False) for i in range(50)]
    relay.publisher._flush(items)

    entries = relay_read(reply_id="r5", attempt="a", after="0", block_seconds=0.1)

    assert [(e.offset, e.text) for e in entries] == [(0, "x" * 50)]


def test_streams_are_bounded_in_length_and_expire(relay_redis, settings):
    settings.REPLY_RELAY_MAX_ENTRIES = 10
    settings.REPLY_RELAY_TTL_SECONDS = 120
    key = relay_stream_key(reply_id="r6", attempt="a")
    for offset in range(0, 300, 2):
        # Non-contiguous offsets, so that nothing is merged: 150 separate entries.
        relay.publisher._flush([relay._Item(key, offset, "y", False)])

    client = redis.Redis.from_url(relay_redis)
    assert client.xlen(key) < 150
    assert client.xlen(key) <= 10 + 100  # MAXLEN ~ trims whole macro nodes (100 entries each by default).
    assert 0 < client.ttl(key) <= 120


def test_a_stopped_redis_opens_the_breaker_and_later_text_is_dropped_without_trying(settings, fresh_relay):
    server = RedisProcess().start()
    settings.REPLY_RELAY_REDIS_URL = server.url
    try:
        relay_publish(reply_id="r7", attempt="a", offset=0, text="before")
        assert relay.publisher.wait_idle(5)
        server.stop()
        relay_publish(reply_id="r7", attempt="a", offset=6, text="during")
        assert relay.publisher.wait_idle(5)
        assert not relay.publisher.breaker.allows()
        queued_before = relay.publisher._queue.unfinished_tasks

        relay_publish(reply_id="r7", attempt="a", offset=12, text="dropped")

        assert relay.publisher._queue.unfinished_tasks == queued_before  # Not even queued.
        with pytest.raises(RelayUnavailable):
            relay_read(reply_id="r7", attempt="a", after="0", block_seconds=0.1)
    finally:
        server.cleanup()


def test_a_black_holed_redis_costs_the_writer_one_timeout_then_nothing(black_hole):
    relay_publish(reply_id="r8", attempt="a", offset=0, text="into the void")
    assert relay.publisher.wait_idle(5)
    assert not relay.publisher.breaker.allows()
    connections = len(black_hole.accepted)

    for offset in range(20):
        relay_publish(reply_id="r8", attempt="a", offset=13 + offset, text="z")
    assert relay.publisher.wait_idle(1)

    assert len(black_hole.accepted) == connections, "the writer kept trying a Redis that does not answer"


def test_a_black_holed_redis_makes_followers_fall_back_instead_of_hanging(black_hole):
    with pytest.raises(RelayUnavailable):
        relay_read(reply_id="r9", attempt="a", after="0", block_seconds=0.2)
    connections = len(black_hole.accepted)

    with pytest.raises(RelayUnavailable):
        relay_read(reply_id="r9", attempt="a", after="0", block_seconds=0.2)

    assert len(black_hole.accepted) == connections, "the breaker should keep followers off a dead Redis"


def test_without_a_relay_configured_nothing_is_queued_and_reads_say_unavailable(settings, fresh_relay):
    settings.REPLY_RELAY_REDIS_URL = ""
    relay_publish(reply_id="r10", attempt="a", offset=0, text="text")

    assert relay.publisher._queue.unfinished_tasks == 0
    with pytest.raises(RelayUnavailable):
        relay_read(reply_id="r10", attempt="a", after="0", block_seconds=0.1)
