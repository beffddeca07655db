import uuid
from collections.abc import Iterator

from django.db.models import QuerySet

from core.errors import NotFound
from interactions.models import Interaction
from messages_app.models import Message, MessageRole, MessageStatus

# About what one default prompt budget holds; more rows are read only if the budget asks.
HISTORY_CHUNK_SIZE = 100


def message_list(*, interaction: Interaction) -> QuerySet[Message]:
    return Message.objects.filter(interaction=interaction)


def message_get(*, interaction: Interaction, message_id: uuid.UUID) -> Message:
    message = Message.objects.filter(interaction=interaction, pk=message_id).first()
    if message is None:
        raise NotFound(f"No message with id {message_id} in this interaction.", param="message_id")
    return message


def message_reply_get(*, message: Message) -> Message | None:
    """The assistant reply to a user message, if one was started."""
    return (
        Message.objects.filter(interaction_id=message.interaction_id, reply_to=message, role=MessageRole.ASSISTANT)
        .order_by("-created_at", "-id")
        .first()
    )


def message_get_by_idempotency_key(*, interaction: Interaction, idempotency_key: str) -> Message | None:
    return Message.objects.filter(interaction=interaction, idempotency_key=idempotency_key).first()


def message_history_newest_first(*, interaction: Interaction, up_to: Message) -> Iterator[Message]:
    """The conversation up to and including `up_to`, newest first, read lazily in chunks.

    A caller that stops early (the prompt budget is spent) never loads the older rows, so
    a reply costs the same on a conversation of ten messages or ten thousand.
    """
    return (
        Message.objects.filter(interaction=interaction, created_at__lte=up_to.created_at)
        .exclude(created_at=up_to.created_at, id__gt=up_to.id)
        .only("id", "role", "content", "status")
        .order_by("-created_at", "-id")
        .iterator(chunk_size=HISTORY_CHUNK_SIZE)
    )


def message_cancel_requested_ids(*, message_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Of these replies, the ones still being generated that the user asked to stop."""
    return list(
        Message.objects.filter(
            pk__in=message_ids, status=MessageStatus.IN_PROGRESS, cancel_requested_at__isnull=False
        ).values_list("pk", flat=True)
    )


def message_latest(*, interaction: Interaction, limit: int) -> list[Message]:
    """The interaction's latest `limit` messages, oldest first: one index walk, whatever
    the length of the conversation."""
    newest_first = Message.objects.filter(interaction=interaction).order_by("-created_at", "-id")[:limit]
    return list(reversed(list(newest_first)))
