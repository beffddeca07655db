from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone

from core.models import new_id
from interactions.models import Interaction

if TYPE_CHECKING:
    from interactions.services import ReplyClaim


class MessageRole(models.TextChoices):
    USER = "user", "user"
    ASSISTANT = "assistant", "assistant"
    SYSTEM = "system", "system"


class MessageStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "in progress"
    COMPLETED = "completed", "completed"
    INCOMPLETE = "incomplete", "incomplete"
    FAILED = "failed", "failed"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="messages", db_index=False)
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETED)
    reply_to = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        # A reply and the message it answers belong to the same interaction and are only ever
        # deleted with it: nothing to set null, so Django deletes an interaction's messages in
        # one statement instead of loading every one of them (22.8 s and 1,006 statements for
        # 100,000 messages with SET_NULL).
        on_delete=models.DO_NOTHING,
        related_name="replies",
        help_text="For an assistant reply: the user message it answers.",
    )

    # What the reply work records.
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    retry_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Rate-limited replies: the seconds the provider asked us to wait."
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the user asked to stop this reply while it was being generated."
    )

    # Null when the client sent no Idempotency-Key; unique per interaction otherwise.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULLs stay out of the unique index)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # For a reply: the claim token of the attempt generating it (a retry takes a new one).
    # Its writes are conditional on it, so a worker that lost its claim changes nothing.
    claim_token = models.CharField(max_length=32, blank=True, default="")

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    # Not database fields. message_create() sets `reply_deferred` when its caller generates
    # the reply itself (streaming); the llm app's post_save receiver then leaves the message
    # alone. `reply_claim` is the claim on the reply slot taken for a user message's reply;
    # `generated_reply` the reply that receiver generated, as stored (no need to read it back).
    reply_deferred: bool = False
    reply_claim: "ReplyClaim | None" = None
    generated_reply: "Message | None" = None

    class Meta:
        indexes = [
            models.Index(fields=["interaction", "created_at", "id"], name="message_interaction_time"),
            # The staff admin: every message newest first, and the failed or incomplete ones
            # (its filters) without a scan of the collection.
            models.Index(fields=["created_at", "id"], name="message_time"),
            models.Index(fields=["status", "created_at", "id"], name="message_status_time"),
            # Replies still in progress, and those of one claim: finalising abandoned replies.
            models.Index(fields=["status", "claim_token"], name="message_status_claim"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["interaction", "idempotency_key"], name="message_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:50]}"


class ReplyErrorCode(models.TextChoices):
    """Why a reply failed. The llm app records these; the API maps them to HTTP statuses."""

    UPSTREAM_TIMEOUT = "upstream_timeout", "the provider did not answer in time"
    UPSTREAM_UNREACHABLE = "upstream_unreachable", "the provider could not be reached"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited", "the provider is rate limiting"
    UPSTREAM_ERROR = "upstream_error", "the provider answered with an error"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response", "the provider's answer could not be used"
    STREAM_INTERRUPTED = "stream_interrupted", "the provider's stream broke off"
    REPLY_ABANDONED = "reply_abandoned", "the server stopped generating the reply (a crash or a failed write)"
    INTERNAL_ERROR = "internal_error", "the server failed while generating"
    CANCELLED = "cancelled", "the user stopped the reply"
