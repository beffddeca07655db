from django.conf import settings
from django.db import models
from django.utils import timezone

from core.models import new_id


class StaffAccessAction(models.TextChoices):
    VIEW = "view", "opened in the admin"
    EXPORT = "export", "exported from the admin"


class StaffAccess(models.Model):
    """A member of staff read a conversation: who, which interaction, when, how.

    The interaction is kept by id, not as a foreign key: the record of who read a
    conversation outlives the conversation. The staff member's username is copied for
    the same reason.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="staff_accesses"
    )
    staff_username = models.CharField(max_length=150)
    interaction_id = models.UUIDField()
    interaction_title = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=16, choices=StaffAccessAction.choices)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "staff access"
        verbose_name_plural = "staff accesses"
        indexes = [
            models.Index(fields=["at", "id"], name="staff_access_time"),
            models.Index(fields=["interaction_id", "at"], name="staff_access_interaction"),
        ]

    def __str__(self) -> str:
        return f"{self.staff_username} {self.action} {self.interaction_id}"
