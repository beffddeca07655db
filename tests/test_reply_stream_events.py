"""SSE framing of reply streams: opaque event ids that resume, heartbeats, the retry hint; the follower cap."""

import pytest

from core.errors import ApplicationError
from llm.events import HEARTBEAT, StreamPosition, sse_event, sse_retry, stream_position_parse
from llm.followers import TooManyFollowers, follower_slot, follower_slot_acquire


def test_every_event_carries_an_id_that_parses_back_to_its_position():
    position = StreamPosition("a1b2", 42, "1700000000000-3")

    frame = sse_event("reply.delta", {"delta": "hi"}, position=position).decode()

    assert frame.endswith("\n\n")
    lines = dict(line.split(": ", 1) for line in frame.strip().splitlines())
    assert lines["event"] == "reply.delta"
    assert stream_position_parse(lines["id"]) == position


def test_a_position_without_a_relay_entry_round_trips():
    assert stream_position_parse(StreamPosition("x", 0).event_id) == StreamPosition("x", 0, "")


@pytest.mark.parametrize(
    "raw", ["", "abc", "a.b.c", "a.-1.0", "a.1.x-y", "a.1.2.3", "ä.1.0", "a." * 40, "a.١٢.0", "a." + "9" * 19 + ".0"]
)
def test_an_id_that_is_not_ours_is_a_clear_400(raw):
    with pytest.raises(ApplicationError) as caught:
        stream_position_parse(raw)

    assert caught.value.status_code == 400
    assert caught.value.code == "invalid_last_event_id"


def test_heartbeats_are_comment_lines_and_the_retry_hint_is_in_milliseconds():
    assert HEARTBEAT.startswith(b":")
    assert sse_retry(2000) == b"retry: 2000\n\n"


def test_a_user_holds_at_most_the_configured_number_of_streams(settings):
    settings.REPLY_FOLLOWERS_PER_USER = 2
    first = follower_slot_acquire(user_id=7)
    second = follower_slot_acquire(user_id=7)

    with pytest.raises(TooManyFollowers) as caught:
        follower_slot_acquire(user_id=7)
    assert caught.value.status_code == 429
    follower_slot_acquire(user_id=8).release()  # Another user is not affected.

    first.release()
    with follower_slot(user_id=7):
        pass
    second.release()


def test_with_the_cache_down_streams_are_not_capped_rather_than_refused(settings, redis_process):
    settings.REPLY_FOLLOWERS_PER_USER = 1
    redis_process.stop()

    slots = [follower_slot_acquire(user_id=9) for _ in range(3)]

    assert len(slots) == 3
