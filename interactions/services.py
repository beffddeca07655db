import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Q
from django.utils import timezone

from core.errors import Conflict
from interactions.cache import interaction_cache_invalidate
from interactions.models import Interaction

TITLE_FROM_MESSAGE_CHARS = 80
UPDATABLE_FIELDS = ("title", "model_name", "role", "prompt", "temperature", "max_tokens", "metadata")


def interaction_create(*, owner: User, **fields: Any) -> Interaction:
    if not fields.get("model_name"):
        fields["model_name"] = settings.LLM_DEFAULT_MODEL
    interaction = Interaction(owner=owner, **fields)
    interaction.full_clean()
    interaction.save()
    interaction_cache_invalidate(owner_id=owner.pk, interaction_id=interaction.pk)
    return interaction


def interaction_update(*, interaction: Interaction, **fields: Any) -> Interaction:
    changed = [name for name in UPDATABLE_FIELDS if name in fields]
    for name in changed:
        setattr(interaction, name, fields[name])
    if changed:
        if "model_name" in changed and not interaction.model_name:
            interaction.model_name = settings.LLM_DEFAULT_MODEL
        interaction.full_clean()
        interaction.version += 1
        interaction.save(update_fields=[*changed, "version", "updated_at"])
        interaction_cache_invalidate(owner_id=interaction.owner_id, interaction_id=interaction.pk)
    return interaction


def interaction_delete(*, interaction: Interaction) -> None:
    owner_id, interaction_id = interaction.owner_id, interaction.pk
    interaction.delete()
    interaction_cache_invalidate(owner_id=owner_id, interaction_id=interaction_id)


def interaction_message_recorded(
    *, interaction: Interaction, at: datetime, delta: int = 1, title_hint: str = ""
) -> None:
    """Keep the denormalised counters right with atomic updates (no read-modify-write)."""
    Interaction.objects.filter(pk=interaction.pk).update(
        message_count=F("message_count") + delta,
        last_message_at=at,
        last_activity_at=at,
        version=F("version") + 1,
    )
    if title_hint and not interaction.title:
        Interaction.objects.filter(pk=interaction.pk, title="").update(
            title=" ".join(title_hint.split())[:TITLE_FROM_MESSAGE_CHARS]
        )
    interaction_cache_invalidate(owner_id=interaction.owner_id, interaction_id=interaction.pk)


def interaction_messages_changed(*, interaction: Interaction) -> None:
    """A message of the interaction was updated in place (a reply finished, for example)."""
    Interaction.objects.filter(pk=interaction.pk).update(version=F("version") + 1)
    interaction_cache_invalidate(owner_id=interaction.owner_id, interaction_id=interaction.pk)


def interaction_reply_slot_claim(*, interaction_id: uuid.UUID) -> None:
    """Claim the right to generate the interaction's next reply, or raise Conflict (409).

    One conditional update, atomic on SQLite, PostgreSQL and MongoDB alike: at most one
    caller sees a matched row. A claim older than LLM_REPLY_LEASE_SECONDS belonged to a
    worker that died mid-reply and may be taken over.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS)
    claimed = Interaction.objects.filter(
        Q(reply_claimed_at__isnull=True) | Q(reply_claimed_at__lt=stale_before),
        pk=interaction_id,
    ).update(reply_claimed_at=now)
    if not claimed:
        raise Conflict(
            "A reply is already being generated for this interaction; wait for it to finish.",
            code="reply_in_progress",
            param="interaction_id",
        )


def interaction_reply_slot_release(*, interaction_id: uuid.UUID) -> None:
    Interaction.objects.filter(pk=interaction_id).update(reply_claimed_at=None)
