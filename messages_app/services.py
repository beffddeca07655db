"""Writes to messages, and the reply lifecycle's writes that touch messages.

A reply is written only under a claim on its interaction's reply slot
(interactions.services.ReplyClaim): it is inserted carrying the claim's token, and every
later write to it is one conditional update on (id, token, `in_progress`). The slot is
released only once no reply of the claim is `in_progress`, so a free slot means that no
reply of the interaction is being made, and an `in_progress` reply whose claim lapsed
(or whose worker died) is *abandoned*: interaction_abandoned_replies_finalise() turns it
into `failed` (`reply_abandoned`), retryable in place. See the README's reply states.
"""

import logging
import os
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError
from django.db.models import F
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.models import new_id, now_stored_precision
from interactions.models import Interaction
from interactions.selectors import interaction_get
from interactions.services import (
    ReplyClaim,
    ReplyClaimLost,
    claim_host,
    interaction_message_recorded,
    interaction_messages_changed,
    interaction_reply_slot_release,
    interaction_reply_slot_take_over,
    reply_claim_lapsed,
)
from messages_app.claim_finaliser import claim_finaliser
from messages_app.models import Message, MessageRole, MessageStatus, ReplyErrorCode
from usage.services import UsageNotRecorded, usage_message_record, usage_message_unrecord, usage_record

logger = logging.getLogger(__name__)

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
RETRYABLE_STATUSES = (MessageStatus.FAILED, MessageStatus.INCOMPLETE)
ABANDONED_MESSAGE = "the server stopped before the reply was finished (a crash or a failed write); retry it"
CANCELLED_MESSAGE = "the reply was stopped at the user's request"


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
    claim: ReplyClaim | None = None,
    message_id: uuid.UUID | None = None,
    created_at: datetime | None = None,
) -> Message:
    """Store a message and keep the interaction's counters right.

    A user message claims the interaction's free reply slot for `claim` (a new one if
    None; Conflict, 409, while a reply is in flight) in the update that counts it, then is
    stored. Storing it sends post_save, on which the llm app (llm/signals.py) generates and
    stores the assistant reply under `message.reply_claim` and releases the slot, unless
    `reply_deferred`: then the caller must generate the reply itself (streaming).

    An assistant reply made under `claim` (which must hold the slot: ReplyClaimLost
    otherwise) is counted under it and stored with its token. `created_at` in the past
    stores a message in its place (a late reply directly after its user message).

    A user message is added to its owner's usage bucket of the day (user_messages) once
    it holds the slot and before it is inserted, so that it is counted even if the worker
    dies while the reply is made; if the insert fails, that count is taken back.

    If storing fails after the slot was claimed, whatever the claim left behind is
    finalised (reply_claim_finalise) before the error propagates: no reply stays
    `in_progress`, the counters are recounted from the rows, the slot is released.
    Nothing here holds a database transaction, so no provider call runs inside one.
    """
    is_user_turn = role == MessageRole.USER
    if is_user_turn and claim is None:
        claim = ReplyClaim.new(interaction_id=interaction.pk, reply_id=new_id())
    now = now_stored_precision()
    message = Message(
        interaction=interaction,
        role=role,
        content=content,
        status=status,
        reply_to=reply_to,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        created_at=created_at or now,
        claim_token=claim.token if claim is not None and not is_user_turn else "",
    )
    if message_id is not None:
        message.id = message_id
    message.reply_deferred = reply_deferred
    message.reply_claim = claim if is_user_turn else None
    # Counted (and for a user message, the reply slot claimed in the same update) before
    # the insert, so that all is right when the post_save receiver starts the reply.
    try:
        interaction_message_recorded(
            interaction=interaction,
            at=now,
            title_hint=content if is_user_turn else "",
            claim=claim if is_user_turn else None,
            fenced_by=claim if not is_user_turn else None,
            backdated=created_at is not None,
        )
    except DatabaseError:
        if claim is not None:
            # Committed or not, the slot holds no reply of this claim yet.
            reply_claim_abort(interaction=interaction, claim=claim)
        else:
            # Whether the count committed cannot be known: count the stored rows.
            interaction_message_count_repair(interaction=interaction)
        raise
    counted_in_usage = is_user_turn and _user_message_usage_record(interaction=interaction, day=now.date())
    try:
        message.save(force_insert=True)
    except Exception as exc:
        if not message._state.adding:
            raise  # Stored; the failure came from a post_save receiver.
        if counted_in_usage:
            _user_message_usage_unrecord(interaction=interaction, message_id=message.pk, day=now.date())
        if claim is not None:
            reply_claim_abort(interaction=interaction, claim=claim)
        else:
            _message_uncount_unless_stored(interaction=interaction, message_id=message.pk, at=now)
        if isinstance(exc, IntegrityError):
            raise Conflict(
                "A message with this Idempotency-Key was created at the same time.",
                code="idempotency_key_in_use",
            ) from None
        raise
    return message


def _usage_model(interaction: Interaction) -> str:
    """The model usage is counted under: the one the interaction asks for (the key a quota
    would use; providers report dated variants)."""
    return interaction.model_name or settings.LLM_DEFAULT_MODEL


def _user_message_usage_record(*, interaction: Interaction, day: date) -> bool:
    """Count a user message about to be stored; False if the count could not be written
    (logged: the message is stored all the same, and the bucket misses it)."""
    try:
        usage_message_record(user_id=interaction.owner_id, model=_usage_model(interaction), day=day)
    except (DatabaseError, UsageNotRecorded):
        logger.warning("usage of a user message on %s was not recorded", interaction.pk, exc_info=True)
        return False
    return True


def _user_message_usage_unrecord(*, interaction: Interaction, message_id: uuid.UUID, day: date) -> None:
    """Take back the count of a user message whose insert failed, unless it was stored all
    the same (committed, then the answer was lost). If the database cannot tell, it stays
    counted (logged)."""
    try:
        if not Message.objects.filter(pk=message_id).exists():
            usage_message_unrecord(user_id=interaction.owner_id, model=_usage_model(interaction), day=day)
    except DatabaseError:
        logger.warning("usage of user message %s stays counted", message_id, exc_info=True)


def _message_uncount_unless_stored(*, interaction: Interaction, message_id: uuid.UUID, at: datetime) -> None:
    """After the insert of a message counted without a claim failed: the count stands if the
    insert committed after all (the call failed afterwards), else it is undone."""
    try:
        if Message.objects.filter(pk=message_id).exists():
            return
        _message_uncount(interaction=interaction, at=at)
    except DatabaseError:
        logger.warning("could not undo the count of message %s", message_id, exc_info=True)


# How often a recount is tried while other writes to the interaction race it.
RECOUNT_ATTEMPTS = 3
RECOUNT_PAUSE_SECONDS = 0.05


def interaction_message_count_repair(*, interaction: Interaction) -> bool:
    """Set the interaction's `message_count` and `last_message_at` from its stored rows,
    after a count that failed without telling whether it committed. Returns whether it did.

    No claim is taken (a user posting meanwhile is not refused). The recount is one update
    conditional on the `version` and the reply-slot token read before counting: every count
    bumps `version`, and a claim changes the token, so a count made meanwhile makes it match
    nothing, and it is tried again. A reply slot whose holder has not stored its reply yet
    (it counts the reply, then stores it, within milliseconds) is waited for. Gives up,
    logged, after RECOUNT_ATTEMPTS tries or on a database error; the finalisation of an
    abandoned claim recounts too.
    """
    for attempt in range(RECOUNT_ATTEMPTS):
        if attempt:
            time.sleep(RECOUNT_PAUSE_SECONDS)
        try:
            seen = Interaction.objects.filter(pk=interaction.pk).values("version", "reply_claim_token").first()
            if seen is None:
                return False
            token = seen["reply_claim_token"]
            if token and not Message.objects.filter(status=MessageStatus.IN_PROGRESS, claim_token=token).exists():
                continue  # Its holder may be between counting its reply and storing it.
            recounted = Interaction.objects.filter(
                pk=interaction.pk, version=seen["version"], reply_claim_token=token
            ).update(
                message_count=Message.objects.filter(interaction_id=interaction.pk).count(),
                last_message_at=_newest_message_at(interaction_id=interaction.pk),
                version=F("version") + 1,
            )
        except DatabaseError:
            logger.warning("recounting the messages of %s failed", interaction.pk, exc_info=True)
            return False
        if recounted:
            return True
    logger.warning("recounting the messages of %s gave up: other writes kept changing it", interaction.pk)
    return False


def _message_uncount(*, interaction: Interaction, at: datetime) -> None:
    """Undo the count of a message whose insert failed (no reply slot held).

    `last_message_at` goes back to the newest stored message, not to the one that was
    never stored, unless another message was counted since.
    """
    Interaction.objects.filter(pk=interaction.pk).update(message_count=F("message_count") - 1, version=F("version") + 1)
    newest = _newest_message_at(interaction_id=interaction.pk)
    Interaction.objects.filter(pk=interaction.pk, last_message_at=at).update(
        last_message_at=newest, version=F("version") + 1
    )


def _newest_message_at(*, interaction_id: uuid.UUID) -> datetime | None:
    return (
        Message.objects.filter(interaction_id=interaction_id)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )


def message_reply_update(*, reply: Message, claim: ReplyClaim, **fields: Any) -> Message:
    """Write what the attempt under `claim` learned about its reply (progress or outcome).

    One conditional update on (id, claim token, `in_progress`): it changes nothing once
    the attempt lost the reply (its claim was taken over, or the reply was finalised or
    retried by someone else), and then raises ReplyClaimLost. Raises NotFound if the reply
    is gone: its interaction was deleted meanwhile. Bumps the interaction's `version`.
    """
    _reply_write_fenced(reply=reply, claim=claim, fields=fields)
    interaction_messages_changed(interaction=reply.interaction)
    return reply


def _reply_write_fenced(*, reply: Message, claim: ReplyClaim, fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(REPLY_FIELDS)
    if unknown:
        raise TypeError(f"Not reply fields: {sorted(unknown)}")
    updated_at = timezone.now()
    written = Message.objects.filter(pk=reply.pk, claim_token=claim.token, status=MessageStatus.IN_PROGRESS).update(
        **fields, updated_at=updated_at
    )
    if not written:
        if not Message.objects.filter(pk=reply.pk).exists():
            raise NotFound(
                "The interaction was deleted while its reply was being generated.", code="interaction_deleted"
            )
        raise ReplyClaimLost(claim)
    for name, value in fields.items():
        setattr(reply, name, value)
    reply.updated_at = updated_at


def message_reply_finish(*, reply: Message, claim: ReplyClaim, **fields: Any) -> Message:
    """The final write of an attempt: its outcome (a status other than `in_progress`), its
    usage added to the owner's bucket of the day, then the slot released. Writes
    conditional on the claim (see message_reply_update, whose errors it raises), and one
    atomic increment (usage.services.usage_record). The release is tried twice; if it
    still fails, the reply is stored all the same and the slot lapses after the lease.
    """
    if fields.get("status", MessageStatus.IN_PROGRESS) == MessageStatus.IN_PROGRESS:
        raise ValueError("A reply's final write must give it a final status.")
    _reply_write_fenced(reply=reply, claim=claim, fields=fields)
    _reply_usage_record(reply=reply)
    for attempt in (1, 2):
        try:
            interaction_reply_slot_release(interaction=reply.interaction, claim=claim)
            break
        except DatabaseError:
            logger.warning("releasing the reply slot of %s failed (attempt %s)", reply.pk, attempt, exc_info=True)
    return reply


def _reply_usage_record(*, reply: Message) -> None:
    """Count the finished attempt under the interaction's usage model (_usage_model)."""
    _usage_record_logged(
        interaction=reply.interaction,
        reply_id=reply.pk,
        status=reply.status,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def _usage_record_logged(*, interaction: Interaction, reply_id: uuid.UUID, **counted: Any) -> None:
    """usage_record() for one reply. A failure here never fails the reply, which is stored:
    it is logged, and the bucket misses this reply."""
    try:
        usage_record(user_id=interaction.owner_id, model=_usage_model(interaction), **counted)
    except (DatabaseError, UsageNotRecorded):
        logger.warning("usage of reply %s was not recorded", reply_id, exc_info=True)


def message_reply_restart(*, reply: Message, claim: ReplyClaim) -> Message:
    """Clear everything the last attempt recorded and mark the reply `in_progress` again,
    owned by `claim` (which holds the slot).

    One conditional update on the reply still being failed or incomplete: Conflict if it
    is not (another retry won, or it was never retryable).
    """
    cleared = {field.name: field.get_default() for field in Message._meta.concrete_fields if field.name in REPLY_FIELDS}
    fields = {**cleared, "status": MessageStatus.IN_PROGRESS, "claim_token": claim.token}
    updated_at = timezone.now()
    if not Message.objects.filter(pk=reply.pk, status__in=RETRYABLE_STATUSES).update(**fields, updated_at=updated_at):
        raise Conflict(
            "Only failed or incomplete replies can be retried; this one is not (any more).",
            code="reply_not_retryable",
            param="message_id",
        )
    for name, value in fields.items():
        setattr(reply, name, value)
    reply.updated_at = updated_at
    interaction_messages_changed(interaction=reply.interaction)
    return reply


def reply_claim_finalise(*, interaction: Interaction, claim: ReplyClaim, replies_token: str) -> None:
    """Finish what an attempt left behind, holding the slot with `claim`, then release it.

    The replies still `in_progress` under `replies_token` are finalised one by one
    (_abandoned_reply_finalise: `incomplete` with the reason `cancelled` if the user asked to
    stop them, `incomplete` if text of theirs was stored, else `failed`; `reply_abandoned`
    for both), each counted in usage by whoever's update changed it, the counters are
    recounted from the stored rows (an insert counted but never stored, or stored but
    reported failed, is counted right), and the slot is released in the update that writes
    the counts. Every write is conditional:
    safe to run twice, or beside the attempt it finalises (whose later writes then fail).
    """
    abandoned = Message.objects.filter(
        interaction_id=interaction.pk, status=MessageStatus.IN_PROGRESS, claim_token=replies_token
    ).values_list("pk", "prompt_tokens", "completion_tokens")
    for reply_id, prompt_tokens, completion_tokens in abandoned:
        _abandoned_reply_finalise(
            interaction=interaction,
            reply_id=reply_id,
            claim_token=replies_token,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
    interaction_reply_slot_release(
        interaction=interaction,
        claim=claim,
        message_count=Message.objects.filter(interaction_id=interaction.pk).count(),
        last_message_at=_newest_message_at(interaction_id=interaction.pk),
    )


def reply_claim_abort(*, interaction: Interaction, claim: ReplyClaim | None) -> None:
    """After a failed write under `claim`: finalise what it left, if the database lets us.

    If it does not (a lock held for seconds, a failover), the claim is handed to this
    process's claim finaliser, which retries until the database takes it, so the slot is
    free seconds after the database is back, not when the lease lapses. (If this process
    dies first, the claim lapses; then the next request, the finalising command or
    gunicorn's child_exit finalises it.)
    """
    if claim is None:
        return
    try:
        reply_claim_finalise(interaction=interaction, claim=claim, replies_token=claim.token)
    except DatabaseError:
        logger.warning("finalising claim %s after a failed write failed too; retrying", claim.token, exc_info=True)
        claim_finaliser.add(interaction=interaction, claim=claim)


def interaction_abandoned_replies_finalise(
    *, interaction: Interaction, dead_host: str = "", dead_pid: int | None = None
) -> Interaction:
    """Finalise the interaction's abandoned replies; return the interaction as stored now.

    Call it on every request that loads the interaction, before any cache lookup: when
    it finalises anything it bumps `version`, so no cached page shows an abandoned reply
    as `in_progress`. Costs nothing (no query) unless the loaded claim lapsed or its
    worker is named dead (`dead_host`, `dead_pid`). Raises NotFound if it was deleted.
    """
    dead = bool(dead_host) and (interaction.reply_claim_host, interaction.reply_claim_pid) == (dead_host, dead_pid)
    if not (dead or reply_claim_lapsed(interaction)):
        return interaction
    claim = interaction_reply_slot_take_over(interaction=interaction, dead_host=dead_host, dead_pid=dead_pid)
    if claim is not None:
        reply_claim_finalise(interaction=interaction, claim=claim, replies_token=interaction.reply_claim_token)
        logger.info("finalised abandoned claim %s on interaction %s", interaction.reply_claim_token, interaction.pk)
    fresh = Interaction.objects.filter(pk=interaction.pk).first()
    if fresh is None:
        raise NotFound(f"No interaction with id {interaction.pk}.", param="interaction_id")
    return fresh


def interaction_get_finalised(*, owner: User, interaction_id: uuid.UUID) -> Interaction:
    """The owner's interaction (NotFound otherwise) with its abandoned replies finalised."""
    return interaction_abandoned_replies_finalise(
        interaction=interaction_get(owner=owner, interaction_id=interaction_id)
    )


def owner_abandoned_replies_finalise(*, owner: User) -> None:
    """Finalise the abandoned replies of all the owner's interactions (before listing them)."""
    stale_before = now_stored_precision() - _lease()
    for interaction in Interaction.objects.filter(owner=owner, reply_claimed_at__lt=stale_before):
        interaction_abandoned_replies_finalise(interaction=interaction)


def replies_abandoned_finalise(*, dead_host: str = "", dead_pid: int | None = None, dead_local: bool = False) -> int:
    """Finalise abandoned replies everywhere (the management command); returns how many
    interactions had something finalised. Safe while the service runs: every write is one
    of the conditional updates above, so it never touches a live attempt.

    - claims older than the lease;
    - with `dead_host`/`dead_pid`: the claims of that worker process, at once;
    - with `dead_local`: the claims of this host whose process no longer exists
      (run when gunicorn starts: the workers of a previous master are gone);
    - replies `in_progress` that their interaction's slot does not hold (from before
      claims had tokens, or left by an interrupted finalisation).
    """
    finalised = 0
    stale_before = now_stored_precision() - _lease()
    for interaction in Interaction.objects.filter(reply_claimed_at__lt=stale_before):
        finalised += _finalised(interaction=interaction)
    if dead_host and dead_pid is not None:
        for interaction in Interaction.objects.filter(reply_claim_host=dead_host, reply_claim_pid=dead_pid):
            finalised += _finalised(interaction=interaction, dead_host=dead_host, dead_pid=dead_pid)
    if dead_local:
        host = claim_host()
        for interaction in Interaction.objects.filter(reply_claim_host=host):
            pid = interaction.reply_claim_pid
            if pid is not None and pid != os.getpid() and not _process_exists(pid):
                finalised += _finalised(interaction=interaction, dead_host=host, dead_pid=pid)
    finalised += _unclaimed_in_progress_replies_finalise()
    return finalised


def _finalised(*, interaction: Interaction, dead_host: str = "", dead_pid: int | None = None) -> int:
    try:
        after = interaction_abandoned_replies_finalise(interaction=interaction, dead_host=dead_host, dead_pid=dead_pid)
    except NotFound:
        return 0
    return int(after.version != interaction.version)


def _unclaimed_in_progress_replies_finalise() -> int:
    """Replies `in_progress` whose interaction's slot is free or held by another claim.

    A reply is inserted only while its claim holds the slot, and the slot is released only
    once the claim's replies are final; so once a reply read here is not its slot's, it can
    no longer be written by anyone, and the conditional update cannot race a live attempt.
    """
    finalised = 0
    rows = Message.objects.filter(status=MessageStatus.IN_PROGRESS).only(
        "id", "interaction_id", "claim_token", "prompt_tokens", "completion_tokens"
    )
    for reply in rows:
        slot = Interaction.objects.filter(pk=reply.interaction_id).first()
        if slot is None or (slot.reply_claimed_at is not None and slot.reply_claim_token == reply.claim_token):
            continue
        if _abandoned_reply_finalise(
            interaction=slot,
            reply_id=reply.pk,
            claim_token=reply.claim_token,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        ):
            interaction_messages_changed(interaction=slot)
            finalised += 1
    return finalised


def _abandoned_reply_finalise(
    *,
    interaction: Interaction,
    reply_id: uuid.UUID,
    claim_token: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
) -> bool:
    """Finalise one abandoned reply and count it in usage; return whether this call did.

    It ends `incomplete` with the reason `cancelled` if the user asked to stop it (the cancel
    is stored; only the worker that would have written it is gone), else `incomplete` if text
    of it was stored while it was generated (kept, as when a provider breaks off), else
    `failed`; `reply_abandoned` for both. All can be retried. Each is one conditional update on
    (id, `in_progress`, claim token), tried in that order: of finalisers racing over the same
    reply (requests, the canceller, the command, gunicorn's child_exit), exactly one changes
    it, and only that one counts it, so the reply is counted once.
    """
    pending = Message.objects.filter(pk=reply_id, status=MessageStatus.IN_PROGRESS, claim_token=claim_token)
    cancelled = pending.exclude(cancel_requested_at=None)
    for status, code, message, rows in (
        (MessageStatus.INCOMPLETE, ReplyErrorCode.CANCELLED, CANCELLED_MESSAGE, cancelled),
        (MessageStatus.INCOMPLETE, ReplyErrorCode.REPLY_ABANDONED, ABANDONED_MESSAGE, pending.exclude(content="")),
        (MessageStatus.FAILED, ReplyErrorCode.REPLY_ABANDONED, ABANDONED_MESSAGE, pending),
    ):
        if rows.update(status=status, error_code=code, error_message=message, updated_at=timezone.now()):
            _usage_record_logged(
                interaction=interaction,
                reply_id=reply_id,
                status=status,
                abandoned=code == ReplyErrorCode.REPLY_ABANDONED,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
            return True
    return False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process: alive.
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether `pid` has exited and waits to be reaped: dead, although signal 0 still reaches it.

    A worker killed with its master is reparented to init, which may take a second or more to
    reap it (measured: 1.4 s here); a finaliser looking meanwhile must not take it for alive.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # No /proc (not Linux), or it is gone now.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _lease() -> timedelta:
    return timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS)


def message_reply_progress_store(*, reply: Message, claim: ReplyClaim, content: str) -> None:
    """Store the text of a reply so far, while `claim`'s attempt generates it.

    Fenced like every write of the attempt (ReplyClaimLost once the claim is lost; NotFound
    if the interaction was deleted). Bumps the interaction's `version`, so no cached page or
    ETag shows an older text, without touching the cache: the generating worker must never
    wait on it (the owner's interaction list shows nothing that progress changes).
    """
    _reply_write_fenced(reply=reply, claim=claim, fields={"content": content})
    Interaction.objects.filter(pk=reply.interaction_id).update(version=F("version") + 1)


def message_reply_cancel_request(*, reply: Message) -> bool:
    """Record that the user asked to stop the reply; False if it is no longer `in_progress`."""
    return bool(
        Message.objects.filter(pk=reply.pk, status=MessageStatus.IN_PROGRESS).update(
            cancel_requested_at=now_stored_precision()
        )
    )


def reply_cancel_finalise(*, reply: Message) -> bool:
    """Finalise a cancelled reply whose worker is gone (its claim lapsed): `incomplete`,
    `cancelled`, counted in usage, the slot released (reply_claim_finalise). Fenced: the slot
    is taken over from the claim that generated the reply, and the reply is written only while
    it still carries that claim's token and is `in_progress`. Returns whether it finalised it.
    """
    interaction = Interaction.objects.filter(pk=reply.interaction_id).first()
    if interaction is None or interaction.reply_claim_token != reply.claim_token or not reply_claim_lapsed(interaction):
        return False
    claim = interaction_reply_slot_take_over(interaction=interaction)
    if claim is None:
        return False
    reply_claim_finalise(interaction=interaction, claim=claim, replies_token=reply.claim_token)
    return True
