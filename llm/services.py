"""Posting messages and generating assistant replies.

message_post() is the one way the API stores a message: idempotency, the user message,
its reply. Every reply attempt (the post_save receiver's, a stream's, a retry's) holds a
claim on the interaction's reply slot (interactions.services.ReplyClaim) and ends in
reply_run(), which calls the provider outside any database transaction and stores the
outcome (completed, incomplete or failed) with writes conditional on the claim, then
releases the slot. If the claim is lost meanwhile (the attempt outlived its lease and its
reply was finalised as abandoned, or retried), the attempt stops and writes nothing more.
If a write fails, what the claim left behind is finalised (messages_app.services.
reply_claim_abort) and the error names what was stored.
"""

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.db import DatabaseError

from core.errors import ApplicationError, Conflict, NotFound
from core.models import new_id
from interactions.models import Interaction
from interactions.services import (
    ReplyClaim,
    ReplyClaimLost,
    interaction_reply_slot_claim,
    interaction_reply_slot_release,
    interaction_reply_slot_renew,
)
from llm.cancellation import ReplyCancelled, reply_cancel_scope
from llm.metrics import replies_total, reply_latency_seconds, reply_time_to_first_token_seconds, tokens_total
from llm.progress import ReplyProgress
from llm.prompts import conversation_build
from llm.providers import ChatProvider, ChatRequest, ProviderError, ProviderFailure, Usage, provider_get
from messages_app.errors import WriteFailed
from messages_app.models import Message, MessageRole, MessageStatus, ReplyErrorCode
from messages_app.selectors import message_get_by_idempotency_key, message_history_newest_first, message_reply_get
from messages_app.services import (
    CANCELLED_MESSAGE,
    REPLY_FIELDS,
    RETRYABLE_STATUSES,
    message_create,
    message_reply_finish,
    message_reply_progress_store,
    message_reply_restart,
    reply_claim_abort,
)

logger = logging.getLogger(__name__)
# The provider-call line: ids, counts and timings, never the text.
reply_logger = structlog.get_logger("llm.reply")

PROVIDER_FAILURE_CODES: dict[ProviderFailure, ReplyErrorCode] = {
    ProviderFailure.TIMEOUT: ReplyErrorCode.UPSTREAM_TIMEOUT,
    ProviderFailure.UNREACHABLE: ReplyErrorCode.UPSTREAM_UNREACHABLE,
    ProviderFailure.RATE_LIMITED: ReplyErrorCode.UPSTREAM_RATE_LIMITED,
    ProviderFailure.ERROR_STATUS: ReplyErrorCode.UPSTREAM_ERROR,
    ProviderFailure.BAD_RESPONSE: ReplyErrorCode.UPSTREAM_BAD_RESPONSE,
}


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request body."


class ReplyWithoutClaim(Exception):
    """A user message reached reply generation without the claim message_create() takes."""


@dataclass(frozen=True)
class MessagePosted:
    """What posting a message did.

    `reply` is the stored reply of a user message (None for other roles): final, unless
    `claim` is set (a streamed post), when it is `in_progress` and the caller must run
    it to the end with reply_run(reply=reply, claim=claim, stream=True).
    """

    message: Message
    reply: Message | None
    replayed: bool
    claim: ReplyClaim | None = None


def request_fingerprint(*, role: str, content: str) -> str:
    """What makes two message requests 'the same' for idempotency (streaming or not is not part)."""
    canonical = json.dumps({"role": role, "content": content}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def message_post(
    *, interaction: Interaction, role: str, content: str, idempotency_key: str | None = None, stream: bool = False
) -> MessagePosted:
    """Post a message to an interaction whose abandoned replies were finalised.

    - An `idempotency_key` seen before with the same body replays: the stored message and
      its reply, no model call; a user message whose reply was never stored gets it now,
      so a replay converges. A different body: IdempotencyKeyReused (422). A reply still
      being generated: Conflict (409 `reply_in_progress`, naming both ids).
    - A user message claims the reply slot (Conflict while a reply is in flight), is
      stored, and its reply is generated and stored (through post_save), or, with
      `stream`, stored `in_progress` for the caller to run (see MessagePosted).
    - Other roles are stored as given.

    A write that fails after the user message was (or may have been) stored raises
    WriteFailed naming the stored ids, unless the reply turns out stored after all.
    """
    fingerprint = request_fingerprint(role=role, content=content) if idempotency_key else ""
    if idempotency_key:
        earlier = message_get_by_idempotency_key(interaction=interaction, idempotency_key=idempotency_key)
        if earlier is not None:
            if earlier.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(param="Idempotency-Key")
            return MessagePosted(message=earlier, reply=_replayed_reply(earlier), replayed=True)
    if role != MessageRole.USER:
        message_id = new_id()
        try:
            message = message_create(
                interaction=interaction,
                role=role,
                content=content,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                message_id=message_id,
            )
        except ApplicationError:
            raise
        except Exception as exc:
            message = _stored_without_reply_after_failure(exc, interaction=interaction, message_id=message_id)
        return MessagePosted(message=message, reply=None, replayed=False)
    message_id = new_id()
    claim = ReplyClaim.new(interaction_id=interaction.pk, reply_id=new_id())
    reply: Message | None
    try:
        message = message_create(
            interaction=interaction,
            role=role,
            content=content,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            reply_deferred=stream,
            claim=claim,
            message_id=message_id,
        )
        if stream:
            reply = reply_start(user_message=message, claim=claim)
            return MessagePosted(message=message, reply=reply, replayed=False, claim=claim)
        reply = message.generated_reply or message_reply_get(message=message)
    except ApplicationError:
        raise
    except Exception as exc:
        message, reply = stored_after_failure(exc, interaction=interaction, message_id=message_id, claim=claim)
    if reply is None:
        raise WriteFailed(database=False, message_id=str(message.pk), reply_id=None, may_have_been_stored=[])
    if reply.status == MessageStatus.IN_PROGRESS:
        # This attempt outlived its lease; its reply was finalised and is being retried.
        raise _reply_in_progress(message=message, reply=reply)
    return MessagePosted(message=message, reply=reply, replayed=False)


def _reply_in_progress(*, message: Message, reply: Message) -> Conflict:
    return Conflict(
        "The reply to this request is still being generated; list the messages to see it.",
        code="reply_in_progress",
        details={"message_id": str(message.pk), "reply_id": str(reply.pk)},
    )


def _replayed_reply(earlier: Message) -> Message | None:
    if earlier.role != MessageRole.USER:
        return None
    reply = message_reply_get(message=earlier)
    if reply is None:
        # Its reply was never stored (a write failed): make it now, so that the replay
        # converges to one user message with one reply.
        return reply_retry(message=earlier)
    if reply.status == MessageStatus.IN_PROGRESS:
        # Live: an abandoned one was finalised when the interaction was loaded.
        raise _reply_in_progress(message=earlier, reply=reply)
    return reply


def stored_after_failure(
    exc: Exception, *, interaction: Interaction, message_id: uuid.UUID | None, claim: ReplyClaim
) -> tuple[Message, Message]:
    """After `exc` broke off a post or retry: what is stored, if its reply is final.

    Returns (user message, reply) when the reply was stored with a final status after all
    (its final write committed, then the call failed). Otherwise raises WriteFailed naming
    what is stored, or, if the database cannot tell, the ids that may have been stored.
    """
    database = isinstance(exc, DatabaseError)
    if not database:
        logger.error("posting or retrying a reply failed", exc_info=exc)
    reply_id = claim.reply_id
    try:
        stored = {m.pk: m for m in Message.objects.filter(interaction_id=interaction.pk, pk__in=[message_id, reply_id])}
        reply = stored.get(reply_id) if reply_id else None
        message = stored.get(message_id) if message_id else (reply.reply_to if reply else None)
    except DatabaseError:
        logger.warning("could not read back what was stored", exc_info=True)
        unsure = ["message_id", "reply_id"] if message_id else ["reply_id"]
        raise WriteFailed(
            database=database, message_id=str(message_id), reply_id=str(reply_id), may_have_been_stored=unsure
        ) from exc
    if message is not None and reply is not None and reply.status != MessageStatus.IN_PROGRESS:
        return message, reply
    raise WriteFailed(
        database=database,
        message_id=str(message.pk) if message else None,
        reply_id=str(reply.pk) if reply else None,
        may_have_been_stored=[],
    ) from exc


def _stored_without_reply_after_failure(exc: Exception, *, interaction: Interaction, message_id: uuid.UUID) -> Message:
    """After `exc` broke off storing a message that gets no reply: the message, if it was
    stored after all (its insert committed, then the call failed); else WriteFailed saying
    that nothing was stored, or, if the database cannot tell, naming the id it may have."""
    database = isinstance(exc, DatabaseError)
    if not database:
        logger.error("posting a message failed", exc_info=exc)
    try:
        message = Message.objects.filter(interaction_id=interaction.pk, pk=message_id).first()
    except DatabaseError:
        logger.warning("could not read back what was stored", exc_info=True)
        raise WriteFailed(
            database=database, message_id=str(message_id), reply_id=None, may_have_been_stored=["message_id"]
        ) from exc
    if message is None:
        raise WriteFailed(database=database, message_id=None, reply_id=None, may_have_been_stored=[]) from exc
    return message


def reply_start(*, user_message: Message, claim: ReplyClaim, backdated: bool = False) -> Message:
    """Store the assistant reply as `in_progress` under `claim`, before the provider is called.

    `claim` holds the slot and names the reply's id. `backdated` stores it at its user
    message's time, directly after it (a late reply to an earlier message). If storing
    fails, what the claim left is finalised and the slot released (message_create).
    """
    return message_create(
        interaction=user_message.interaction,
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.IN_PROGRESS,
        reply_to=user_message,
        claim=claim,
        message_id=claim.reply_id,
        created_at=user_message.created_at if backdated else None,
    )


def reply_generate(*, user_message: Message) -> Message:
    """Generate, store and return the reply to a user message just stored (not streamed)."""
    if user_message.reply_claim is None:
        raise ReplyWithoutClaim(f"user message {user_message.pk} was stored without claiming the reply slot")
    claim = user_message.reply_claim
    reply = reply_start(user_message=user_message, claim=claim)
    for _ in reply_run(reply=reply, claim=claim, stream=False):
        pass
    user_message.generated_reply = reply
    return reply


def reply_retry_start(*, message: Message) -> tuple[Message, ReplyClaim]:
    """Start a new attempt at a reply, in place: returns the `in_progress` reply and its claim.

    `message` is a failed or incomplete reply (regenerated, keeping its id), or a user
    message: its reply is retried likewise, or, if it has none (a write failed), made now,
    stored directly after it. Raises Conflict if there is nothing to retry or another
    reply is in flight. The caller runs the attempt with reply_run().
    """
    reply: Message | None = message
    if message.role == MessageRole.USER:
        reply = message_reply_get(message=message)
        if reply is None:
            claim = interaction_reply_slot_claim(interaction_id=message.interaction_id, reply_id=new_id())
            return reply_start(user_message=message, claim=claim, backdated=True), claim
    if reply is None or reply.role != MessageRole.ASSISTANT or reply.reply_to_id is None:
        raise Conflict("Only replies and user messages can be retried.", code="not_a_reply", param="message_id")
    if reply.status == MessageStatus.IN_PROGRESS:
        raise Conflict(
            "This reply is still being generated; list the messages to see it.",
            code="reply_in_progress",
            param="message_id",
        )
    if reply.status not in RETRYABLE_STATUSES:
        raise Conflict(
            f"Only failed or incomplete replies can be retried; this one is {reply.status}.",
            code="reply_not_retryable",
            param="message_id",
        )
    claim = interaction_reply_slot_claim(interaction_id=reply.interaction_id, reply_id=reply.pk)
    try:
        message_reply_restart(reply=reply, claim=claim)
    except Conflict:
        interaction_reply_slot_release(interaction=reply.interaction, claim=claim)
        raise
    except DatabaseError:
        reply_claim_abort(interaction=reply.interaction, claim=claim)
        raise
    return reply, claim


def reply_retry(*, message: Message) -> Message:
    """Retry a reply (see reply_retry_start) and run it to the end, not streamed."""
    reply, claim = reply_retry_start(message=message)
    try:
        for _ in reply_run(reply=reply, claim=claim, stream=False):
            pass
    except ApplicationError:
        raise
    except Exception as exc:
        user_message_id = reply.reply_to_id
        _, reply = stored_after_failure(exc, interaction=reply.interaction, message_id=user_message_id, claim=claim)
    return reply


@dataclass(frozen=True)
class ReplyError:
    """Why a reply failed, as stored on it."""

    code: ReplyErrorCode
    message: str
    retry_after_seconds: int | None = None


@dataclass
class _Attempt:
    started: float
    # Stores and relays the text while it arrives (llm/progress.py).
    progress: ReplyProgress
    parts: list[str] = field(default_factory=list)
    model: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    first_token_at: float | None = None
    error: ReplyError | None = None
    claim_lost: bool = False


def reply_run(*, reply: Message, claim: ReplyClaim, stream: bool) -> Iterator[str]:
    """Call the provider for an `in_progress` reply under `claim`, yield its text as it
    arrives, store the outcome and release the slot.

    The caller must consume the iterator to the end (or close it): the outcome is stored
    then. Afterwards `reply` holds what is stored, also when the claim was lost (then the
    attempt stored nothing and `reply` shows what its new owner stored). Raises NotFound
    if the interaction was deleted meanwhile, and a failed write's error after finalising
    what the claim left (reply_claim_abort).
    """
    provider = provider_get()
    progress = ReplyProgress(
        reply_id=reply.pk,
        attempt=reply_attempt(reply),
        store=lambda text: message_reply_progress_store(reply=reply, claim=claim, content=text),
    )
    attempt = _Attempt(started=time.monotonic(), progress=progress)
    try:
        try:
            yield from _reply_text(reply=reply, claim=claim, provider=provider, stream=stream, attempt=attempt)
        except GeneratorExit:
            attempt.error = ReplyError(ReplyErrorCode.STREAM_INTERRUPTED, "the reply was abandoned before it finished")
            _reply_finish(reply=reply, claim=claim, provider=provider, stream=stream, attempt=attempt)
            raise
        _reply_finish(reply=reply, claim=claim, provider=provider, stream=stream, attempt=attempt)
    finally:
        # The outcome is stored (or cannot be): followers stop waiting for this attempt's text.
        progress.finished()


def _reply_text(
    *, reply: Message, claim: ReplyClaim, provider: ChatProvider, stream: bool, attempt: _Attempt
) -> Iterator[str]:
    interaction = reply.interaction
    renewed_at = time.monotonic()
    renew_every = settings.LLM_REPLY_LEASE_SECONDS / 3
    try:
        user_message = reply.reply_to
        if user_message is None:
            raise ValueError(f"reply {reply.pk} answers no user message")
        cap = settings.LLM_MAX_OUTPUT_TOKENS
        request = ChatRequest(
            model=interaction.model_name or settings.LLM_DEFAULT_MODEL,
            messages=conversation_build(
                interaction=interaction,
                history_newest_first=message_history_newest_first(interaction=interaction, up_to=user_message),
            ),
            max_tokens=min(interaction.max_tokens or cap, cap),
            temperature=interaction.temperature,
        )
        attempt.model = request.model
        # A stored cancel request cuts the provider call, even one blocked reading (llm/cancellation.py).
        with reply_cancel_scope(reply.pk) as cancel_scope:
            for chunk in provider.chat(request, stream=stream):
                cancel_scope.check()
                attempt.model = chunk.model or attempt.model
                attempt.finish_reason = chunk.finish_reason or attempt.finish_reason
                attempt.usage = chunk.usage or attempt.usage
                if chunk.delta:
                    if attempt.first_token_at is None:
                        attempt.first_token_at = time.monotonic()
                    attempt.parts.append(chunk.delta)
                    attempt.progress.add(chunk.delta)
                    yield chunk.delta
                if time.monotonic() - renewed_at >= renew_every:
                    if not _claim_renewed(claim=claim):
                        raise ReplyClaimLost(claim)
                    renewed_at = time.monotonic()
        if not attempt.parts:
            attempt.error = ReplyError(
                ReplyErrorCode.UPSTREAM_BAD_RESPONSE, "the model provider returned an empty reply"
            )
        elif stream and not attempt.finish_reason:
            attempt.error = ReplyError(ReplyErrorCode.STREAM_INTERRUPTED, "the model provider's stream ended early")
    except ProviderError as exc:
        attempt.error = ReplyError(PROVIDER_FAILURE_CODES[exc.failure], exc.message, exc.retry_after_seconds)
    except ReplyCancelled:
        attempt.error = ReplyError(ReplyErrorCode.CANCELLED, CANCELLED_MESSAGE)
    except ReplyClaimLost:
        attempt.claim_lost = True
    except Exception as exc:
        logger.exception("reply %s failed", reply.pk)
        attempt.error = ReplyError(
            ReplyErrorCode.INTERNAL_ERROR, f"the server failed while generating: {type(exc).__name__}"
        )


def _claim_renewed(*, claim: ReplyClaim) -> bool:
    """Renew the claim; False only if it is known lost. A renewal that fails (the database
    was busy for a moment) does not end the reply: the lease outlasts three renewals, so the
    next one tries again, and the final write still finds out whether the claim is held."""
    try:
        return interaction_reply_slot_renew(claim=claim)
    except DatabaseError:
        logger.warning("renewing claim %s failed; the reply goes on", claim.token, exc_info=True)
        return True


def _reply_finish(
    *, reply: Message, claim: ReplyClaim, provider: ChatProvider, stream: bool, attempt: _Attempt
) -> None:
    """Store the attempt's outcome under its claim, release the slot, count it in the metrics."""
    if attempt.claim_lost:
        logger.warning("reply %s: claim %s lost mid-reply; stopped, nothing stored", reply.pk, claim.token)
        _reply_reload(reply)
        return
    latency = time.monotonic() - attempt.started
    time_to_first_token = (attempt.first_token_at - attempt.started) if (stream and attempt.first_token_at) else None
    content = "".join(attempt.parts)
    error, usage = attempt.error, attempt.usage
    if error is not None and error.code == ReplyErrorCode.CANCELLED:
        # Stopped by the user: what arrived (possibly nothing) is kept, and can be retried.
        status = MessageStatus.INCOMPLETE
    elif error is not None:
        # Text that arrived before a failure is kept; the reply is then incomplete.
        status = MessageStatus.INCOMPLETE if content else MessageStatus.FAILED
    elif attempt.finish_reason == "length":
        status = MessageStatus.INCOMPLETE
    else:
        status = MessageStatus.COMPLETED
    try:
        message_reply_finish(
            reply=reply,
            claim=claim,
            content=content,
            status=status,
            model=attempt.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            latency_ms=round(latency * 1000),
            time_to_first_token_ms=round(time_to_first_token * 1000) if time_to_first_token is not None else None,
            finish_reason=attempt.finish_reason,
            error_code=str(error.code) if error else "",
            error_message=error.message if error else "",
            retry_after_seconds=error.retry_after_seconds if error else None,
        )
    except ReplyClaimLost:
        logger.warning("reply %s: claim %s lost before its final write; nothing stored", reply.pk, claim.token)
        _reply_reload(reply)
        return
    except NotFound:
        raise
    except Exception:
        reply_claim_abort(interaction=reply.interaction, claim=claim)
        raise
    reply_logger.info(
        "provider_call",
        provider=provider.name,
        model=attempt.model,
        interaction_id=str(reply.interaction_id),
        reply_id=str(reply.pk),
        stream=stream,
        status=str(status),
        error_code=str(error.code) if error else "",
        latency_ms=round(latency * 1000),
        time_to_first_token_ms=round(time_to_first_token * 1000) if time_to_first_token is not None else None,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )
    replies_total.labels(provider.name, status, error.code if error else "").inc()
    reply_latency_seconds.labels(provider.name).observe(latency)
    if time_to_first_token is not None:
        reply_time_to_first_token_seconds.labels(provider.name).observe(time_to_first_token)
    if usage:
        tokens_total.labels(provider.name, "prompt").inc(usage.prompt_tokens or 0)
        tokens_total.labels(provider.name, "completion").inc(usage.completion_tokens or 0)


def reply_attempt(reply: Message) -> str:
    """The opaque name of the reply's current generation attempt, in event ids and relay keys.

    Derived from the attempt's claim token (a retry takes a new one), which it does not reveal.
    """
    return hashlib.sha256(f"{reply.pk}:{reply.claim_token}".encode()).hexdigest()[:16]


def _reply_reload(reply: Message) -> None:
    try:
        reply.refresh_from_db(fields=[*REPLY_FIELDS, "claim_token", "updated_at"])
    except Message.DoesNotExist:
        raise NotFound(
            "The interaction was deleted while its reply was being generated.", code="interaction_deleted"
        ) from None
