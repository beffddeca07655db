import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from audit.models import StaffAccess
from core.models import now_stored_precision


def staff_access_record(
    *, staff_user: AbstractBaseUser | AnonymousUser, interaction_id: uuid.UUID, interaction_title: str, action: str
) -> StaffAccess:
    """Record that `staff_user` read the interaction (one insert)."""
    return StaffAccess.objects.create(
        staff_user=staff_user if isinstance(staff_user, User) else None,
        staff_username=staff_user.get_username(),
        interaction_id=interaction_id,
        interaction_title=interaction_title[:200],
        action=action,
        at=now_stored_precision(),
    )
