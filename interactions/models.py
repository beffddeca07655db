from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.models import new_id


class PromptRole(models.TextChoices):
    SYSTEM = "system", "system"
    DEVELOPER = "developer", "developer"


class Interaction(models.Model):
    """A conversation of one user with the model, with the settings its replies use."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interactions")
    title = models.CharField(max_length=200, blank=True)
    model_name = models.CharField(max_length=200)
    role = models.CharField(
        max_length=16,
        choices=PromptRole.choices,
        default=PromptRole.SYSTEM,
        help_text="The role the prompt is sent as.",
    )
    prompt = models.TextField(blank=True, help_text="The system prompt.")
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    metadata = models.JSONField(default=dict, blank=True)

    # Denormalised so that listing never counts or joins messages.
    message_count = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    # Bumped by every write to the interaction or its messages; part of cache keys.
    version = models.PositiveBigIntegerField(default=0)
    # The reply slot: set while a reply is being generated (see interactions/services.py,
    # interaction_reply_slot_claim). The token names the attempt that holds it; the host and
    # pid name the worker process, so that its claims can be finalised when it dies.
    reply_claimed_at = models.DateTimeField(null=True, blank=True)
    reply_claim_token = models.CharField(max_length=32, blank=True, default="")
    reply_claim_host = models.CharField(max_length=255, blank=True, default="")
    reply_claim_pid = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "last_activity_at", "id"], name="interaction_owner_activity"),
            # Abandoned claims: an owner's (interaction list), everyone's (the finalising
            # command), a dead worker's (gunicorn's child_exit).
            models.Index(fields=["owner", "reply_claimed_at"], name="interaction_owner_reply_claim"),
            models.Index(fields=["reply_claimed_at"], name="interaction_reply_claimed_at"),
            models.Index(fields=["reply_claim_host", "reply_claim_pid"], name="interaction_reply_claim_holder"),
        ]

    def __str__(self) -> str:
        return self.title or f"Interaction {self.id}"
