"""An interaction's conversation as a JSON document or a Markdown transcript, streamed.

The messages are read in keyset chunks along the (interaction, created_at, id) index: one
short query per chunk, so an export of 100,000 messages holds neither them all in memory
nor one database cursor open for as long as the client takes to read it.

JSON is the API's own representation:
`{"object": "interaction.export", "interaction": {...}, "messages": [{...}, ...]}`.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Q
from rest_framework.utils.encoders import JSONEncoder

from interactions.models import Interaction
from interactions.serializers import InteractionSerializer
from messages_app.models import Message, MessageStatus
from messages_app.serializers import MessageSerializer

EXPORT_CHUNK_SIZE = 500
FLAGGED_STATUSES = (MessageStatus.FAILED, MessageStatus.INCOMPLETE, MessageStatus.IN_PROGRESS)


def message_chunks(*, interaction: Interaction, chunk_size: int | None = None) -> Iterator[list[Message]]:
    """The interaction's messages, oldest first, `chunk_size` at a time, one query each."""
    chunk_size = chunk_size or EXPORT_CHUNK_SIZE
    after: Message | None = None
    while True:
        rows = Message.objects.filter(interaction=interaction)
        if after is not None:
            rows = rows.filter(Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, id__gt=after.id))
        chunk = list(rows.order_by("created_at", "id")[:chunk_size])
        if chunk:
            yield chunk
        if len(chunk) < chunk_size:
            return
        after = chunk[-1]


def _dumps(data: Any) -> str:
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":"))


def interaction_export_json(*, interaction: Interaction) -> Iterator[str]:
    yield f'{{"object":"interaction.export","interaction":{_dumps(InteractionSerializer(interaction).data)}'
    yield ',"messages":['
    first = True
    for chunk in message_chunks(interaction=interaction):
        for message in chunk:
            yield ("" if first else ",") + _dumps(MessageSerializer(message).data)
            first = False
    yield "]}"


def interactions_export_json(*, interactions: Iterable[Interaction]) -> Iterator[str]:
    """Several interactions: `{"object": "list", "data": [<export>, ...]}`."""
    yield '{"object":"list","data":['
    for index, interaction in enumerate(interactions):
        if index:
            yield ","
        yield from interaction_export_json(interaction=interaction)
    yield "]}"


def interaction_export_markdown(*, interaction: Interaction) -> Iterator[str]:
    yield f"# {_one_line(interaction.title) or f'Interaction {interaction.pk}'}\n\n"
    yield f"- Interaction: `{interaction.pk}`\n"
    yield f"- Model: `{interaction.model_name}`\n"
    yield f"- Created: {interaction.created_at.isoformat()}\n"
    yield f"- Messages: {interaction.message_count}\n"
    if interaction.prompt:
        yield f"\n**Prompt** (sent as `{interaction.role}`):\n\n{_quoted(interaction.prompt)}\n"
    for chunk in message_chunks(interaction=interaction):
        for message in chunk:
            yield _message_markdown(message)


def interactions_export_markdown(*, interactions: Iterable[Interaction]) -> Iterator[str]:
    for index, interaction in enumerate(interactions):
        if index:
            yield "\n---\n\n"
        yield from interaction_export_markdown(interaction=interaction)


def _message_markdown(message: Message) -> str:
    facts = [message.created_at.isoformat(), str(message.status)]
    if message.model:
        facts.append(f"model `{message.model}`")
    if message.total_tokens is not None:
        facts.append(f"{message.total_tokens} tokens")
    if message.latency_ms is not None:
        facts.append(f"{message.latency_ms} ms")
    text = f"\n## {message.role} · {' · '.join(facts)}\n\n"
    if message.status in FLAGGED_STATUSES:
        reason = f": `{message.error_code}` {_one_line(message.error_message)}" if message.error_code else ""
        text += f"> **{str(message.status).upper()}**{reason}\n\n"
    if message.content:
        text += f"{message.content}\n"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())
