"""Server-sent events for a reply being generated.

A client asks for them with `stream=true` or by accepting only `text/event-stream`; an
idempotent replay asked for that way answers its stored result as events (replayed_events).

Events, in order: `message.created` (the stored user message; absent on retry),
`reply.created` (the stored `in_progress` reply), `reply.delta` (`{"id", "delta"}`, as
text arrives), then `reply.completed` (the stored reply) or `error` (the error envelope
naming the stored ids in `error.details` (`message_id`, `reply_id`), with the stored reply
in `error.details.reply` and, when the provider rate-limited us,
how long it asked to wait in `error.details.retry_after_seconds`).
"""

import json
from collections.abc import Generator, Iterator
from contextlib import suppress
from typing import Any

from django.db import DatabaseError

from core.errors import ApplicationError, Conflict
from core.exceptions import application_error_body, error_body
from interactions.services import ReplyClaim
from llm.services import reply_run, stored_after_failure
from messages_app.errors import REPLY_ERROR_STATUS, WriteFailed
from messages_app.models import Message, MessageStatus
from messages_app.serializers import MessageSerializer


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _reply_events(*, reply: Message, claim: ReplyClaim, user_message: Message | None) -> Generator[bytes, None, None]:
    run = reply_run(reply=reply, claim=claim, stream=True)
    try:
        if user_message is not None:
            yield sse("message.created", MessageSerializer(user_message).data)
        yield sse("reply.created", MessageSerializer(reply).data)
        for delta in run:
            yield sse("reply.delta", {"id": str(reply.pk), "delta": delta})
    except GeneratorExit:
        # The client went away. Finish the reply anyway so that it is stored whole and
        # the client finds it when it lists the messages again.
        with suppress(ApplicationError, DatabaseError):  # Nothing left to tell anyone.
            for _ in run:
                pass
        raise
    except ApplicationError as exc:
        yield sse("error", application_error_body(exc, status=exc.status_code))
        return
    except Exception as exc:
        # A write failed; reply_run finalised what it could. Tell what is stored.
        try:
            _, reply = stored_after_failure(
                exc, interaction=reply.interaction, message_id=reply.reply_to_id, claim=claim
            )
        except WriteFailed as failure:
            yield sse("error", application_error_body(failure, status=failure.status_code))
            return
    yield _final_event(reply)


def _final_event(reply: Message) -> bytes:
    reply_data = MessageSerializer(reply).data
    if reply.status == MessageStatus.IN_PROGRESS:
        # This attempt outlived its lease; its reply was finalised and is being retried.
        conflict = Conflict(
            "This attempt at the reply was taken over; list the messages to see the reply.",
            code="reply_in_progress",
            details={"reply_id": str(reply.pk)},
        )
        return sse("error", application_error_body(conflict, status=conflict.status_code))
    if not reply.error_code:
        return sse("reply.completed", reply_data)
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
    return sse("error", body)


def replayed_events(*, message: Message, reply: Message) -> Iterator[bytes]:
    """The stored result of an idempotent replay asked for as a stream, as the events its own
    stream had: `message.created`, `reply.created`, the whole text in one `reply.delta`, then
    `reply.completed` or `error`. No model is called."""
    yield sse("message.created", MessageSerializer(message).data)
    yield sse("reply.created", MessageSerializer(reply).data)
    if reply.content:
        yield sse("reply.delta", {"id": str(reply.pk), "delta": reply.content})
    yield _final_event(reply)


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
