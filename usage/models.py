from django.conf import settings
from django.db import models

from core.models import new_id


class UsageBucket(models.Model):
    """What one user spent on one model in one day (UTC): user messages, replies by status
    and tokens.

    One row per (user, day, model), kept up to date with atomic increments by
    usage_message_record() when a user message is stored and by usage_record() at each
    reply's final write (or its finalisation as abandoned), so that reading usage never scans messages
    and a per-user quota can later be checked from a handful of rows (the unique index
    serves `user = ? AND day >= ?`). Deleted with the user.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_buckets")
    day = models.DateField()
    model = models.CharField(max_length=200)
    user_messages = models.PositiveIntegerField(default=0)
    replies_completed = models.PositiveIntegerField(default=0)
    replies_incomplete = models.PositiveIntegerField(default=0)
    replies_failed = models.PositiveIntegerField(default=0)
    # Of the failed and incomplete replies, those finalised as `reply_abandoned` (their worker
    # died or lost its claim): counted under their stored status too.
    replies_abandoned = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "model"], name="usage_bucket_user_day_model"),
        ]
        indexes = [models.Index(fields=["day", "user"], name="usage_bucket_day_user")]

    def __str__(self) -> str:
        return f"{self.day} {self.model}"

    @property
    def replies(self) -> int:
        return self.replies_completed + self.replies_incomplete + self.replies_failed
