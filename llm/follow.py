"""Following a reply from anywhere: the events of `GET .../messages/{reply_id}/stream/`.

The same events as the POST stream: `reply.created` (the reply, its text left out), then
`reply.delta` events carrying the text (the first one holds all the text so far), then the
terminal event (`reply.completed`, `reply.cancelled` or `error`). A finished reply is sent
whole at once. Each event has an `id:` (llm/events.py); resuming from one sends only what
came after it, so the text a client received, joined, equals the stored reply.

Where the text comes from:
- With the Redis relay (llm/relay.py): live deltas, read with blocking reads. Every relay
  entry says at which character it starts, so overlaps are skipped and a gap (text dropped
  while Redis was failing, or trimmed) is noticed; the follower then reads the database.
- Without it, or once it fails: the stored progress, polled every REPLY_STREAM_POLL_SECONDS.
Either way the stored reply is checked whenever no text came for REPLY_STREAM_WAIT_SECONDS,
so a reply whose worker died ends with its stored (abandoned) outcome instead of a hang:
gunicorn's master finalises a dead worker's replies at once, and a follower that heard
nothing for REPLY_STREAM_HEARTBEAT_SECONDS finalises a reply whose claim lapsed.
"""

import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

from django.conf import settings

from llm.events import HEARTBEAT, StreamPosition, sse_event, sse_retry
from llm.followers import FollowerSlot
from llm.metrics import reply_followers, reply_follows_total
from llm.relay import RelayUnavailable, relay_enabled, relay_read
from llm.services import reply_attempt
from messages_app.models import Message, MessageStatus
from messages_app.serializers import MessageSerializer


def reply_created_data(reply: Message) -> dict[str, Any]:
    """The `reply.created` event: the reply as stored, its text to follow in deltas."""
    return {**MessageSerializer(reply).data, "content": ""}


class ReplyFollower:
    """The event stream of one follower. Iterate it; closing it frees the follower's slot."""

    def __init__(
        self,
        *,
        reply: Message,
        since: StreamPosition | None,
        slot: FollowerSlot,
        reload: Callable[[Message], Message | None],
        terminal_event: Callable[[Message], tuple[str, dict[str, Any]]],
        finalise_abandoned: Callable[[Message], None],
    ) -> None:
        self._reply = reply
        self._since = since
        self._slot = slot
        self._reload = reload
        self._terminal_event = terminal_event
        self._finalise_abandoned = finalise_abandoned
        self._events = self._run()
        reply_followers.inc()
        self._counted = True

    def __iter__(self) -> "ReplyFollower":
        return self

    def __next__(self) -> bytes:
        return next(self._events)

    def close(self) -> None:
        self._events.close()
        if self._counted:
            self._counted = False
            reply_followers.dec()
            self._slot.release()

    def _run(self) -> Generator[bytes, None, None]:
        outcome = "disconnected"
        try:
            yield from self._follow()
            outcome = "finished"
        finally:
            reply_follows_total.labels(outcome).inc()

    def _follow(self) -> Iterator[bytes]:
        reply = self._reply
        attempt = reply_attempt(reply)
        since = self._since
        head = [sse_retry(settings.REPLY_STREAM_RETRY_MS)]
        if since is None or since.attempt != attempt:
            # A new follower, or one whose attempt was replaced by a retry: from the start.
            position = StreamPosition(attempt, 0)
            head.append(sse_event("reply.created", reply_created_data(reply), position=position))
        else:
            position = since
        if reply.status != MessageStatus.IN_PROGRESS:
            yield b"".join(head) + self._finish(reply, position)
            return
        if len(reply.content) > position.offset:
            # The text stored so far comes at once; the relay's copy of it is skipped below.
            text = reply.content[position.offset :]
            position = position.advanced(chars=len(text))
            head.append(sse_event("reply.delta", {"id": str(reply.pk), "delta": text}, position=position))
        yield b"".join(head)

        use_relay = relay_enabled()
        last_sent = last_checked = time.monotonic()
        while True:
            chunks: list[bytes] = []
            ended = False
            if use_relay:
                try:
                    entries = relay_read(
                        reply_id=reply.pk,
                        attempt=attempt,
                        after=position.entry or "0",
                        block_seconds=settings.REPLY_STREAM_WAIT_SECONDS,
                    )
                except RelayUnavailable:
                    use_relay = False
                    entries = []
                for entry in entries:
                    if entry.offset > position.offset:
                        use_relay = False  # Text is missing from the relay: the database has it.
                        break
                    text = entry.text[position.offset - entry.offset :]
                    position = position.advanced(chars=len(text), entry=entry.entry_id)
                    if text:
                        chunks.append(sse_event("reply.delta", {"id": str(reply.pk), "delta": text}, position=position))
                    if entry.end:
                        ended = True
                        break
            now = time.monotonic()
            if ended or not use_relay or not chunks or now - last_checked >= settings.REPLY_STREAM_WAIT_SECONDS:
                last_checked = now
                stored = self._reload(reply)
                if stored is None or reply_attempt(stored) != attempt or stored.status != MessageStatus.IN_PROGRESS:
                    yield b"".join(chunks) + self._finish(stored, position)
                    return
                if not use_relay and len(stored.content) > position.offset:
                    text = stored.content[position.offset :]
                    position = position.advanced(chars=len(text))
                    chunks.append(sse_event("reply.delta", {"id": str(reply.pk), "delta": text}, position=position))
            if chunks:
                yield b"".join(chunks)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= settings.REPLY_STREAM_HEARTBEAT_SECONDS:
                # Silence this long: a reply whose claim lapsed is finalised (a dead worker's
                # is finalised at once by gunicorn's master, and then seen above).
                self._finalise_abandoned(reply)
                self._slot.renew()
                yield HEARTBEAT
                last_sent = time.monotonic()
            if not use_relay:
                time.sleep(settings.REPLY_STREAM_POLL_SECONDS)

    def _finish(self, stored: Message | None, position: StreamPosition) -> bytes:
        """The rest of the stored text and the terminal event of a reply that is no longer generated."""
        if stored is None:
            from core.exceptions import error_body

            body = error_body(
                message="The interaction was deleted while its reply was being generated.",
                status_code=404,
                code="interaction_deleted",
            )
            return sse_event("error", body, position=position)
        chunks = []
        attempt = reply_attempt(stored)
        if attempt != position.attempt:
            # Finished by another attempt than the one followed (a retry): start over.
            position = StreamPosition(attempt, 0)
            chunks.append(sse_event("reply.created", reply_created_data(stored), position=position))
        if len(stored.content) > position.offset:
            text = stored.content[position.offset :]
            position = position.advanced(chars=len(text))
            chunks.append(sse_event("reply.delta", {"id": str(stored.pk), "delta": text}, position=position))
        event, data = self._terminal_event(stored)
        chunks.append(sse_event(event, data, position=position))
        return b"".join(chunks)
