import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Q

from core.errors import Conflict
from core.models import now_stored_precision
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
    *, interaction: Interaction, at: datetime, delta: int = 1, title_hint: str = "", claim_reply_slot: bool = False
) -> None:
    """Keep the denormalised counters right with atomic updates (no read-modify-write).

    With `claim_reply_slot` the same update claims the interaction's reply slot, as
    interaction_reply_slot_claim() does, and counts nothing if it is taken (Conflict).
    """
    rows = Interaction.objects.filter(pk=interaction.pk)
    claim = {}
    if claim_reply_slot:
        rows = rows.filter(_reply_slot_free(at))
        claim = {"reply_claimed_at": at}
    counted = rows.update(
        message_count=F("message_count") + delta,
        last_message_at=at,
        last_activity_at=at,
        version=F("version") + 1,
        **claim,
    )
    if claim_reply_slot and not counted:
        raise _reply_in_progress()
    if title_hint and not interaction.title:
        Interaction.objects.filter(pk=interaction.pk, title="").update(
            title=" ".join(title_hint.split())[:TITLE_FROM_MESSAGE_CHARS]
        )
    interaction_cache_invalidate(owner_id=interaction.owner_id, interaction_id=interaction.pk)


def interaction_messages_changed(*, interaction: Interaction, release_reply_slot: bool = False) -> None:
    """A message of the interaction was updated in place (a reply finished, for example).

    With `release_reply_slot` the same update releases the reply slot.
    """
    release = {"reply_claimed_at": None} if release_reply_slot else {}
    Interaction.objects.filter(pk=interaction.pk).update(version=F("version") + 1, **release)
    interaction_cache_invalidate(owner_id=interaction.owner_id, interaction_id=interaction.pk)


def interaction_reply_slot_claim(*, interaction_id: uuid.UUID) -> None:
    """Claim the right to generate the interaction's next reply, or raise Conflict (409).

    One conditional update, atomic on SQLite, PostgreSQL and MongoDB alike: at most one
    caller sees a matched row. A claim older than LLM_REPLY_LEASE_SECONDS belonged to a
    worker that died mid-reply and may be taken over.
    """
    now = now_stored_precision()
    if not Interaction.objects.filter(_reply_slot_free(now), pk=interaction_id).update(reply_claimed_at=now):
        raise _reply_in_progress()


def interaction_reply_slot_renew(*, interaction_id: uuid.UUID) -> None:
    """Keep a claim fresh while its reply is still arriving.

    Only a claim whose worker has been silent for LLM_REPLY_LEASE_SECONDS may be taken
    over, however long the reply (a slow local model streaming for many minutes).
    """
    Interaction.objects.filter(pk=interaction_id, reply_claimed_at__isnull=False).update(
        reply_claimed_at=now_stored_precision()
    )


def interaction_reply_slot_release(*, interaction_id: uuid.UUID) -> None:
    Interaction.objects.filter(pk=interaction_id).update(reply_claimed_at=None)


def _reply_slot_free(now: datetime) -> Q:
    stale_before = now - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS)
    return Q(reply_claimed_at__isnull=True) | Q(reply_claimed_at__lt=stale_before)


def _reply_in_progress() -> Conflict:
    return Conflict(
        "A reply is already being generated for this interaction; wait for it to finish.",
        code="reply_in_progress",
        param="interaction_id",
    )
