"""Recording usage: one atomic increment per reply, never a read-modify-write.

usage_record() is called once per reply attempt, right after the reply's final write
(llm.services). It must work the same on SQLite and MongoDB without transactions:

1. a conditional update that adds to the counters of the (user, day, model) bucket,
   computed by the database from the stored values (`F(...) + n`);
2. if no bucket matched, an insert holding this reply's numbers;
3. if that insert loses a race to another one (the unique index refuses it), the update
   of step 1 again, which now matches.
"""

from contextlib import nullcontext
from datetime import date
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from usage.models import UsageBucket

STATUS_FIELDS = {
    "completed": "replies_completed",
    "incomplete": "replies_incomplete",
    "failed": "replies_failed",
}
ATTEMPTS = 3


class UsageNotRecorded(Exception):
    """The bucket could be neither updated nor inserted (a constant race: should not happen)."""


def usage_record(
    *,
    user_id: Any,
    model: str,
    status: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    day: date | None = None,
) -> None:
    """Add one reply that ended with `status` (completed, incomplete, failed) and its tokens.

    Raises ValueError for any other status.
    """
    if status not in STATUS_FIELDS:
        raise ValueError(f"usage is recorded for finished replies only, not {status!r}")
    day = day or timezone.now().date()
    increments = {
        STATUS_FIELDS[status]: 1,
        "prompt_tokens": prompt_tokens or 0,
        "completion_tokens": completion_tokens or 0,
    }
    bucket = UsageBucket.objects.filter(user_id=user_id, day=day, model=model)
    for _ in range(ATTEMPTS):
        if bucket.update(
            **{name: F(name) + amount for name, amount in increments.items() if amount},
            updated_at=timezone.now(),
        ):
            return
        try:
            # Inside a caller's transaction (tests, an atomic request) a refused insert must
            # not break it: a savepoint. In autocommit, as in production, none is needed.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                UsageBucket.objects.create(user_id=user_id, day=day, model=model, **increments)
            return
        except IntegrityError:
            continue  # Another reply created the bucket meanwhile: add to it.
    raise UsageNotRecorded(f"usage bucket ({user_id}, {day}, {model}) could not be written")
