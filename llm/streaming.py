"""Server-sent events for a reply being generated.

A client asks for them with `stream=true` or by accepting only `text/event-stream`; an
idempotent replay asked for that way answers its stored result as events (replayed_events).

Events, in order: `message.created` (the stored user message; absent on retry),
`reply.created` (the stored `in_progress` reply), `reply.delta` (`{"id", "delta"}`, as
text arrives), then `reply.completed` (the stored reply), `reply.cancelled` (the stored
reply, stopped at the user's request) or `error` (the error envelope naming the stored ids in
`error.details` (`message_id`, `reply_id`), with the stored reply in `error.details.reply`
and, when the provider rate-limited us, how long it asked to wait in
`error.details.retry_after_seconds`). Every event has an `id:` (llm/events.py) that
`GET .../messages/{reply_id}/stream/` resumes from; the stream starts with a `retry:` hint.
"""

from collections.abc import Generator, Iterator
from contextlib import suppress
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from core.errors import ApplicationError, Conflict
from core.exceptions import application_error_body, error_body
from interactions.services import ReplyClaim
from llm.events import StreamPosition, sse_event, sse_retry
from llm.services import reply_attempt, reply_run, stored_after_failure
from messages_app.errors import REPLY_ERROR_STATUS, WriteFailed
from messages_app.models import Message, MessageStatus, ReplyErrorCode
from messages_app.serializers import MessageSerializer


def _reply_events(*, reply: Message, claim: ReplyClaim, user_message: Message | None) -> Generator[bytes, None, None]:
    run = reply_run(reply=reply, claim=claim, stream=True)
    position = StreamPosition(reply_attempt(reply), 0)
    try:
        head = [sse_retry(settings.REPLY_STREAM_RETRY_MS)]
        if user_message is not None:
            head.append(sse_event("message.created", MessageSerializer(user_message).data, position=position))
        head.append(sse_event("reply.created", MessageSerializer(reply).data, position=position))
        yield b"".join(head)
        for delta in run:
            position = position.advanced(chars=len(delta))
            yield sse_event("reply.delta", {"id": str(reply.pk), "delta": delta}, position=position)
    except GeneratorExit:
        # The client went away. Finish the reply anyway so that it is stored whole and
        # the client finds it when it lists the messages again.
        with suppress(ApplicationError, DatabaseError):  # Nothing left to tell anyone.
            for _ in run:
                pass
        raise
    except ApplicationError as exc:
        yield sse_event("error", application_error_body(exc, status=exc.status_code), position=position)
        return
    except Exception as exc:
        # A write failed; reply_run finalised what it could. Tell what is stored.
        try:
            _, reply = stored_after_failure(
                exc, interaction=reply.interaction, message_id=reply.reply_to_id, claim=claim
            )
        except WriteFailed as failure:
            yield sse_event("error", application_error_body(failure, status=failure.status_code), position=position)
            return
    event, data = reply_terminal_event(reply)
    yield sse_event(event, data, position=position)


def reply_terminal_event(reply: Message) -> tuple[str, dict[str, Any]]:
    """The last event of a reply's stream (the POST stream's and every follower's), from the reply as stored."""
    reply_data = MessageSerializer(reply).data
    if reply.status == MessageStatus.IN_PROGRESS:
        # This attempt outlived its lease; its reply was finalised and is being retried.
        conflict = Conflict(
            "This attempt at the reply was taken over; list the messages to see the reply.",
            code="reply_in_progress",
            details={"reply_id": str(reply.pk)},
        )
        return "error", application_error_body(conflict, status=conflict.status_code)
    if reply.error_code == ReplyErrorCode.CANCELLED:
        return "reply.cancelled", reply_data
    if not reply.error_code:
        return "reply.completed", reply_data
    status_code = REPLY_ERROR_STATUS.get(reply.error_code, 502)
    body = error_body(
        message=f"The reply could not be completed: {reply.error_message}",
        status_code=status_code,
        code=reply.error_code,
        error_type="upstream_error",
        details={
            "status": status_code,
            # What is stored, named as a JSON error names it (the stored reply is whole in `reply`).
            **({"message_id": str(reply.reply_to_id)} if reply.reply_to_id else {}),
            "reply_id": str(reply.pk),
            "reply": reply_data,
            **({"retry_after_seconds": reply.retry_after_seconds} if reply.retry_after_seconds else {}),
        },
    )
    return "error", body


def replayed_events(*, message: Message, reply: Message) -> Iterator[bytes]:
    """The stored result of an idempotent replay asked for as a stream, as the events its own
    stream had (with their ids, so a client may follow the reply from the last one):
    `message.created`, `reply.created`, the whole text in one `reply.delta`, then the terminal
    event. No model is called."""
    position = StreamPosition(reply_attempt(reply), 0)
    yield sse_retry(settings.REPLY_STREAM_RETRY_MS)
    yield sse_event("message.created", MessageSerializer(message).data, position=position)
    yield sse_event("reply.created", MessageSerializer(reply).data, position=position)
    if reply.content:
        position = position.advanced(chars=len(reply.content))
        yield sse_event("reply.delta", {"id": str(reply.pk), "delta": reply.content}, position=position)
    event, data = reply_terminal_event(reply)
    yield sse_event(event, data, position=position)


class ReplyEventStream:
    """The SSE body of a reply. Closing it, even before it started, still stores the reply."""

    def __init__(self, *, reply: Message, claim: ReplyClaim, user_message: Message | None) -> None:
        self._events = _reply_events(reply=reply, claim=claim, user_message=user_message)
        self._started = False

    def __iter__(self) -> "ReplyEventStream":
        return self

    def __next__(self) -> bytes:
        self._started = True
        return next(self._events)

    def close(self) -> None:
        if not self._started:
            for _ in self._events:
                pass
        self._events.close()
