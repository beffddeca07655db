from datetime import datetime

from django.utils import timezone
from uuid6 import uuid7


def new_id():  # type: ignore[no-untyped-def]
    """Time-ordered UUIDv7: ids sort in creation order, which keeps list tie-breaks intuitive."""
    return uuid7()


def now_stored_precision() -> datetime:
    """The current time in milliseconds, the finest a MongoDB date holds.

    An instance stamped with it compares equal to its stored row on every backend, so
    keyset comparisons against an instance still in memory select the same rows.
    """
    now = timezone.now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
