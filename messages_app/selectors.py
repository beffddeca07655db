import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from interactions.models import Interaction
from messages_app.models import Message, MessageRole


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


def message_history(*, interaction: Interaction, up_to: Message) -> list[Message]:
    """The conversation before and including `up_to`, oldest first."""
    return list(
        Message.objects.filter(interaction=interaction, created_at__lte=up_to.created_at)
        .exclude(created_at=up_to.created_at, id__gt=up_to.id)
        .order_by("created_at", "id")
    )
