"""Generating assistant replies.

Every path (the post_save receiver, streaming, retry) ends in reply_run(), which calls
the provider outside any database transaction, always stores the outcome on the reply
(completed, incomplete or failed) and always releases the interaction's reply slot.
"""

import logging
import time
from collections.abc import Iterator

import structlog
from django.conf import settings

from core.errors import Conflict
from interactions.services import (
    interaction_reply_slot_claim,
    interaction_reply_slot_release,
    interaction_reply_slot_renew,
)
from llm.metrics import replies_total, reply_latency_seconds, reply_time_to_first_token_seconds, tokens_total
from llm.prompts import conversation_build
from llm.providers import ChatRequest, ProviderError, Usage, provider_get
from messages_app.models import Message, MessageRole, MessageStatus, ReplyErrorCode
from messages_app.selectors import message_history_newest_first
from messages_app.services import message_create, message_reply_restart, message_reply_update

logger = logging.getLogger(__name__)
# The provider-call line: ids, counts and timings, never the text.
reply_logger = structlog.get_logger("llm.reply")

RETRYABLE_STATUSES = (MessageStatus.FAILED, MessageStatus.INCOMPLETE)


def reply_start(*, user_message: Message) -> Message:
    """Store the assistant reply as `in_progress`, before the provider is called.

    The caller holds the interaction's reply slot; if this fails, the slot is released.
    """
    try:
        return message_create(
            interaction=user_message.interaction,
            role=MessageRole.ASSISTANT,
            content="",
            status=MessageStatus.IN_PROGRESS,
            reply_to=user_message,
        )
    except Exception:
        interaction_reply_slot_release(interaction_id=user_message.interaction_id)
        raise


def reply_generate(*, user_message: Message) -> Message:
    """Generate, store and return the reply to a stored user message (not streamed)."""
    reply = reply_start(user_message=user_message)
    for _ in reply_run(reply=reply, stream=False):
        pass
    return reply


def reply_retry_start(*, reply: Message) -> Message:
    """Reset a failed or incomplete reply to `in_progress`, keeping its id and place.

    Raises Conflict if the message is not a retryable reply or another reply is in flight.
    """
    if reply.role != MessageRole.ASSISTANT or reply.reply_to_id is None:
        raise Conflict("Only assistant replies can be retried.", code="not_a_reply", param="message_id")
    if reply.status not in RETRYABLE_STATUSES:
        raise Conflict(
            f"Only failed or incomplete replies can be retried; this one is {reply.status}.",
            code="reply_not_retryable",
            param="message_id",
        )
    interaction_reply_slot_claim(interaction_id=reply.interaction_id)
    try:
        return message_reply_restart(reply=reply)
    except Exception:
        interaction_reply_slot_release(interaction_id=reply.interaction_id)
        raise


def reply_retry(*, reply: Message) -> Message:
    reply = reply_retry_start(reply=reply)
    for _ in reply_run(reply=reply, stream=False):
        pass
    return reply


def reply_run(*, reply: Message, stream: bool) -> Iterator[str]:
    """Call the provider for an `in_progress` reply, yield its text as it arrives, store it.

    The caller must consume the iterator to the end: the outcome is stored when it ends.
    """
    provider = provider_get()
    interaction = reply.interaction
    parts: list[str] = []
    model = ""
    finish_reason = ""
    usage: Usage | None = None
    first_token_at: float | None = None
    error: ProviderError | None = None
    started = renewed_at = time.monotonic()
    renew_every = settings.LLM_REPLY_LEASE_SECONDS / 3
    try:
        assert reply.reply_to is not None
        cap = settings.LLM_MAX_OUTPUT_TOKENS
        request = ChatRequest(
            model=interaction.model_name or settings.LLM_DEFAULT_MODEL,
            messages=conversation_build(
                interaction=interaction,
                history_newest_first=message_history_newest_first(interaction=interaction, up_to=reply.reply_to),
            ),
            max_tokens=min(interaction.max_tokens or cap, cap),
            temperature=interaction.temperature,
        )
        model = request.model
        for chunk in provider.chat(request, stream=stream):
            model = chunk.model or model
            finish_reason = chunk.finish_reason or finish_reason
            usage = chunk.usage or usage
            if chunk.delta:
                if first_token_at is None:
                    first_token_at = time.monotonic()
                parts.append(chunk.delta)
                yield chunk.delta
            if time.monotonic() - renewed_at >= renew_every:
                interaction_reply_slot_renew(interaction_id=reply.interaction_id)
                renewed_at = time.monotonic()
        if not parts:
            error = ProviderError(ReplyErrorCode.UPSTREAM_BAD_RESPONSE, "the model provider returned an empty reply")
        elif stream and not finish_reason:
            error = ProviderError(ReplyErrorCode.STREAM_INTERRUPTED, "the model provider's stream ended early")
    except ProviderError as exc:
        error = exc
    except GeneratorExit:
        error = ProviderError(ReplyErrorCode.STREAM_INTERRUPTED, "the reply was abandoned before it finished")
        raise
    except Exception as exc:
        logger.exception("reply %s failed", reply.pk)
        error = ProviderError(
            ReplyErrorCode.INTERNAL_ERROR, f"the server failed while generating: {type(exc).__name__}"
        )
    finally:
        latency = time.monotonic() - started
        time_to_first_token = (first_token_at - started) if (stream and first_token_at) else None
        # The write that stores the outcome also releases the reply slot. Should it fail,
        # the slot is released on its own: the interaction is never left locked.
        try:
            status = _reply_store(
                reply=reply,
                content="".join(parts),
                model=model,
                finish_reason=finish_reason,
                usage=usage,
                error=error,
                latency=latency,
                time_to_first_token=time_to_first_token,
            )
        except BaseException:
            interaction_reply_slot_release(interaction_id=reply.interaction_id)
            raise
        reply_logger.info(
            "provider_call",
            provider=provider.name,
            model=model,
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
        _reply_observe(
            provider_name=provider.name,
            status=status,
            usage=usage,
            error=error,
            latency=latency,
            time_to_first_token=time_to_first_token,
        )


def _reply_store(
    *,
    reply: Message,
    content: str,
    model: str,
    finish_reason: str,
    usage: Usage | None,
    error: ProviderError | None,
    latency: float,
    time_to_first_token: float | None,
) -> str:
    """Store the outcome on the reply and release the reply slot; returns the status."""
    if error is not None:
        # Text that arrived before a failure is kept; the reply is then incomplete.
        status = MessageStatus.INCOMPLETE if content else MessageStatus.FAILED
    elif finish_reason == "length":
        status = MessageStatus.INCOMPLETE
    else:
        status = MessageStatus.COMPLETED
    message_reply_update(
        reply=reply,
        release_reply_slot=True,
        content=content,
        status=status,
        model=model,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        total_tokens=usage.total_tokens if usage else None,
        latency_ms=round(latency * 1000),
        time_to_first_token_ms=round(time_to_first_token * 1000) if time_to_first_token is not None else None,
        finish_reason=finish_reason,
        error_code=str(error.code) if error else "",
        error_message=error.message if error else "",
        retry_after_seconds=error.retry_after_seconds if error else None,
    )
    return status


def _reply_observe(
    *,
    provider_name: str,
    status: str,
    usage: Usage | None,
    error: ProviderError | None,
    latency: float,
    time_to_first_token: float | None,
) -> None:
    replies_total.labels(provider_name, status, error.code if error else "").inc()
    reply_latency_seconds.labels(provider_name).observe(latency)
    if time_to_first_token is not None:
        reply_time_to_first_token_seconds.labels(provider_name).observe(time_to_first_token)
    if usage:
        tokens_total.labels(provider_name, "prompt").inc(usage.prompt_tokens or 0)
        tokens_total.labels(provider_name, "completion").inc(usage.completion_tokens or 0)
