from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.models import now_stored_precision
from interactions.models import Interaction
from interactions.services import (
    interaction_message_recorded,
    interaction_messages_changed,
    interaction_reply_slot_release,
)
from messages_app.models import Message, MessageRole, MessageStatus

REPLY_FIELDS = (
    "content",
    "status",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_ms",
    "time_to_first_token_ms",
    "finish_reason",
    "error_code",
    "error_message",
    "retry_after_seconds",
    "cancel_requested_at",
)


def message_create(
    *,
    interaction: Interaction,
    role: str,
    content: str,
    status: str = MessageStatus.COMPLETED,
    reply_to: Message | None = None,
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
    reply_deferred: bool = False,
) -> Message:
    """Store a message and keep the interaction's counters right.

    A user message first claims the interaction's reply slot (Conflict, 409, while a reply
    is in flight), then is stored. Storing it sends post_save, on which the llm app
    (llm/signals.py) generates and stores the assistant reply and releases the slot,
    unless `reply_deferred`: then the caller must generate the reply itself (streaming).
    Nothing here holds a database transaction, so the reply's provider call never runs
    inside one.
    """
    is_user_turn = role == MessageRole.USER
    now = now_stored_precision()
    message = Message(
        interaction=interaction,
        role=role,
        content=content,
        status=status,
        reply_to=reply_to,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        created_at=now,
    )
    message.reply_deferred = reply_deferred
    # Counted (and for a user message, the reply slot claimed in the same update) before
    # the insert, so that all is right when the post_save receiver starts the reply;
    # undone if the insert fails.
    interaction_message_recorded(
        interaction=interaction, at=now, title_hint=content if is_user_turn else "", claim_reply_slot=is_user_turn
    )
    try:
        message.save(force_insert=True)
    except Exception as exc:
        if not message._state.adding:
            raise  # Stored; the failure came from a post_save receiver.
        interaction_message_recorded(interaction=interaction, at=now, delta=-1)
        if is_user_turn:
            interaction_reply_slot_release(interaction_id=interaction.pk)
        if isinstance(exc, IntegrityError):
            raise Conflict(
                "A message with this Idempotency-Key was created at the same time.",
                code="idempotency_key_in_use",
            ) from None
        raise
    return message


def message_reply_update(*, reply: Message, release_reply_slot: bool = False, **fields: Any) -> Message:
    """Write what the reply work learned (content, status, usage, timings, error).

    With `release_reply_slot` the interaction's reply slot is released in the same write
    that records the change. Raises NotFound if the reply is gone: its interaction was
    deleted meanwhile.
    """
    unknown = set(fields) - set(REPLY_FIELDS)
    if unknown:
        raise TypeError(f"Not reply fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(reply, name, value)
    reply.updated_at = timezone.now()
    if not Message.objects.filter(pk=reply.pk).update(**fields, updated_at=reply.updated_at):
        raise NotFound("The interaction was deleted while its reply was being generated.", code="interaction_deleted")
    interaction_messages_changed(interaction=reply.interaction, release_reply_slot=release_reply_slot)
    return reply


def message_reply_restart(*, reply: Message) -> Message:
    """Clear everything the last attempt recorded and mark the reply `in_progress` again."""
    cleared = {field.name: field.get_default() for field in Message._meta.concrete_fields if field.name in REPLY_FIELDS}
    return message_reply_update(reply=reply, **{**cleared, "status": MessageStatus.IN_PROGRESS})
