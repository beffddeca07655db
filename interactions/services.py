import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import F, Q

from core.errors import Conflict, NotFound
from core.models import now_stored_precision
from interactions.models import Interaction

TITLE_FROM_MESSAGE_CHARS = 80
UPDATABLE_FIELDS = ("title", "model_name", "role", "prompt", "temperature", "max_tokens", "metadata")


def interaction_create(*, owner: User, **fields: Any) -> Interaction:
    if not fields.get("model_name"):
        fields["model_name"] = settings.LLM_DEFAULT_MODEL
    interaction = Interaction(owner=owner, **fields)
    interaction.full_clean()
    interaction.save()
    return interaction


def interaction_update(*, interaction: Interaction, **fields: Any) -> Interaction:
    changed = [name for name in UPDATABLE_FIELDS if name in fields]
    for name in changed:
        setattr(interaction, name, fields[name])
    if changed:
        if "model_name" in changed and not interaction.model_name:
            interaction.model_name = settings.LLM_DEFAULT_MODEL
        interaction.full_clean()
        # `version` is bumped in the database, never from the loaded value: a reply
        # counted meanwhile bumped it too, and two states under one version would let a
        # cached page keyed by it show the older one.
        Interaction.objects.filter(pk=interaction.pk).update(
            **{name: getattr(interaction, name) for name in changed},
            version=F("version") + 1,
            updated_at=now_stored_precision(),
        )
        try:
            interaction.refresh_from_db()
        except Interaction.DoesNotExist:
            raise NotFound(f"No interaction with id {interaction.pk}.", param="interaction_id") from None
    return interaction


def interaction_delete(*, interaction: Interaction) -> None:
    interaction.delete()


@dataclass(frozen=True)
class ReplyClaim:
    """One generation attempt's hold on an interaction's reply slot: a fencing token.

    Every attempt (a first reply or a retry, which keeps the reply's id) takes a claim of
    its own. The slot records its token, host and pid; the reply row records its token.
    Renewing and releasing the slot, and every write to the reply made under the claim,
    are single conditional updates on the token: once the claim is lost (taken over after
    the lease, or finalised when its worker died) they match nothing, so a late worker
    can neither overwrite a newer attempt nor free a slot it no longer holds.
    """

    interaction_id: uuid.UUID
    token: str
    host: str
    pid: int
    # The reply the attempt writes, its id assigned before anything is stored, so that a
    # failure can name it. None for a claim taken to finalise abandoned replies.
    reply_id: uuid.UUID | None = None

    @classmethod
    def new(cls, *, interaction_id: uuid.UUID, reply_id: uuid.UUID | None = None) -> "ReplyClaim":
        return cls(
            interaction_id=interaction_id,
            token=uuid.uuid4().hex,
            host=claim_host(),
            pid=os.getpid(),
            reply_id=reply_id,
        )

    def slot_fields(self, *, at: datetime) -> dict[str, Any]:
        return {
            "reply_claimed_at": at,
            "reply_claim_token": self.token,
            "reply_claim_host": self.host,
            "reply_claim_pid": self.pid,
        }


SLOT_RELEASED: dict[str, Any] = {
    "reply_claimed_at": None,
    "reply_claim_token": "",
    "reply_claim_host": "",
    "reply_claim_pid": None,
}


def claim_host() -> str:
    """The name a worker's claims record as their host (one gunicorn master per host name)."""
    return socket.gethostname()[:255]


def interaction_message_recorded(
    *,
    interaction: Interaction,
    at: datetime,
    delta: int = 1,
    title_hint: str = "",
    claim: ReplyClaim | None = None,
    fenced_by: ReplyClaim | None = None,
    backdated: bool = False,
) -> None:
    """Keep the denormalised counters right with atomic updates (no read-modify-write).

    With `claim` the same update claims the interaction's free reply slot for it, as
    interaction_reply_slot_claim() does, and counts nothing if the slot is taken
    (Conflict). With `fenced_by` it counts only while that claim holds the slot
    (ReplyClaimLost otherwise): a reply is counted by the attempt that inserts it.
    """
    rows = Interaction.objects.filter(pk=interaction.pk)
    claim_fields = {}
    if claim is not None:
        rows = rows.filter(reply_claimed_at__isnull=True)
        claim_fields = claim.slot_fields(at=at)
    if fenced_by is not None:
        rows = rows.filter(reply_claim_token=fenced_by.token)
    last_message = {} if backdated else {"last_message_at": at}
    counted = rows.update(
        message_count=F("message_count") + delta,
        last_activity_at=at,
        version=F("version") + 1,
        **last_message,
        **claim_fields,
    )
    if claim is not None and not counted:
        raise _reply_in_progress()
    if fenced_by is not None and not counted:
        raise ReplyClaimLost(fenced_by)
    if title_hint and not interaction.title:
        Interaction.objects.filter(pk=interaction.pk, title="").update(
            title=" ".join(title_hint.split())[:TITLE_FROM_MESSAGE_CHARS], version=F("version") + 1
        )


def interaction_messages_changed(*, interaction: Interaction) -> None:
    """A message of the interaction was updated in place (a reply progressed, for example)."""
    Interaction.objects.filter(pk=interaction.pk).update(version=F("version") + 1)


class ReplyClaimLost(Exception):
    """The claim no longer holds the reply slot: its attempt must stop and write nothing more."""

    def __init__(self, claim: ReplyClaim) -> None:
        self.claim = claim
        super().__init__(f"claim {claim.token} on interaction {claim.interaction_id} is no longer held")


def interaction_reply_slot_claim(*, interaction_id: uuid.UUID, reply_id: uuid.UUID | None = None) -> ReplyClaim:
    """Claim the interaction's free reply slot for a new attempt, or raise Conflict (409).

    One conditional update, atomic on SQLite and MongoDB alike: at most one caller sees a
    matched row. A slot whose claim lapsed is not free until its abandoned replies are
    finalised (messages_app.services.interaction_abandoned_replies_finalise), which every
    request that loads the interaction does first.
    """
    claim = ReplyClaim.new(interaction_id=interaction_id, reply_id=reply_id)
    now = now_stored_precision()
    if not Interaction.objects.filter(pk=interaction_id, reply_claimed_at__isnull=True).update(
        **claim.slot_fields(at=now)
    ):
        raise _reply_in_progress()
    return claim


def interaction_reply_slot_renew(*, claim: ReplyClaim) -> bool:
    """Keep a claim fresh while its reply is still arriving; False if it is no longer held.

    Only a claim whose worker has been silent for LLM_REPLY_LEASE_SECONDS counts as
    abandoned, however long the reply (a slow local model streaming for many minutes).
    """
    return bool(
        Interaction.objects.filter(pk=claim.interaction_id, reply_claim_token=claim.token).update(
            reply_claimed_at=now_stored_precision()
        )
    )


def interaction_reply_slot_release(
    *,
    interaction: Interaction,
    claim: ReplyClaim,
    message_count: int | None = None,
    last_message_at: datetime | None = None,
) -> bool:
    """Free the slot if `claim` still holds it, and bump `version` either way.

    Contract: call it only once no reply of the claim is `in_progress` (its final write
    is done, or it was finalised as failed): a free slot means no reply is being made.
    `message_count`/`last_message_at`, counted from the stored rows while holding the
    claim, correct the counters in the same update. Returns whether the claim was held.
    """
    recounted: dict[str, Any] = {}
    if message_count is not None:
        recounted = {"message_count": message_count, "last_message_at": last_message_at}
    released = Interaction.objects.filter(pk=interaction.pk, reply_claim_token=claim.token).update(
        version=F("version") + 1, **SLOT_RELEASED, **recounted
    )
    if not released:
        Interaction.objects.filter(pk=interaction.pk).update(version=F("version") + 1)
    return bool(released)


def interaction_reply_slot_take_over(
    *, interaction: Interaction, dead_host: str = "", dead_pid: int | None = None
) -> ReplyClaim | None:
    """Take the slot from an abandoned claim, to finalise what it left behind.

    The claim seen on `interaction` is abandoned when it lapsed (older than
    LLM_REPLY_LEASE_SECONDS) or when its worker is known dead (`dead_host`, `dead_pid`).
    One conditional update on its token: None if it was renewed, released or taken over
    meanwhile. The new claim holds the slot until the caller releases it.
    """
    old_token = interaction.reply_claim_token
    now = now_stored_precision()
    abandoned = Q(reply_claimed_at__lt=now - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS))
    if dead_host and dead_pid is not None:
        abandoned |= Q(reply_claim_host=dead_host, reply_claim_pid=dead_pid)
    claim = ReplyClaim.new(interaction_id=interaction.pk)
    taken = Interaction.objects.filter(
        abandoned, pk=interaction.pk, reply_claimed_at__isnull=False, reply_claim_token=old_token
    ).update(**claim.slot_fields(at=now))
    return claim if taken else None


def reply_claim_lapsed(interaction: Interaction) -> bool:
    """Whether the claim on the interaction, as loaded, is older than the lease."""
    if interaction.reply_claimed_at is None:
        return False
    stale_before = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS)
    return interaction.reply_claimed_at < stale_before


def _reply_in_progress() -> Conflict:
    return Conflict(
        "A reply is already being generated for this interaction; wait for it to finish.",
        code="reply_in_progress",
        param="interaction_id",
    )
