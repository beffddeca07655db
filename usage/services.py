"""Recording usage: one atomic increment per event, never a read-modify-write.

usage_message_record() is called once per stored user message (messages_app.services.
message_create), usage_record() once per reply attempt, right after the reply's final
write or its finalisation as abandoned (messages_app.services). Both add to the
(user, day, model) bucket the same way, on SQLite and MongoDB alike, without transactions:

1. a conditional update that adds to the counters of the bucket, computed by the database
   from the stored values (`F(...) + n`);
2. if no bucket matched, an insert holding this event's numbers;
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
    abandoned: bool = False,
    day: date | None = None,
) -> None:
    """Add one reply that ended with `status` (completed, incomplete, failed) and its tokens.

    `abandoned` (with `failed` or `incomplete`): the reply was finalised as `reply_abandoned`
    (`incomplete` when the text that had arrived was kept); it is counted under its status and
    in replies_abandoned. Raises ValueError for any other status, or for an abandoned reply
    that is completed.
    """
    if status not in STATUS_FIELDS:
        raise ValueError(f"usage is recorded for finished replies only, not {status!r}")
    if abandoned and status not in ("failed", "incomplete"):
        raise ValueError(f"an abandoned reply is failed or incomplete, not {status!r}")
    increments = {
        STATUS_FIELDS[status]: 1,
        "replies_abandoned": int(abandoned),
        "prompt_tokens": prompt_tokens or 0,
        "completion_tokens": completion_tokens or 0,
    }
    _bucket_add(user_id=user_id, model=model, day=day or timezone.now().date(), increments=increments)


def usage_message_record(*, user_id: Any, model: str, day: date | None = None) -> None:
    """Add one stored user message to the bucket of the interaction's model."""
    _bucket_add(user_id=user_id, model=model, day=day or timezone.now().date(), increments={"user_messages": 1})


def _bucket_add(*, user_id: Any, model: str, day: date, increments: dict[str, int]) -> None:
    """Add `increments` to the (user, day, model) bucket: update, else insert, else update."""
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
            continue  # Another event created the bucket meanwhile: add to it.
    raise UsageNotRecorded(f"usage bucket ({user_id}, {day}, {model}) could not be written")


def usage_message_unrecord(*, user_id: Any, model: str, day: date) -> None:
    """Take back a user message counted by usage_message_record() whose insert then failed.

    One conditional update; never below zero (the bucket may be gone with its user)."""
    UsageBucket.objects.filter(user_id=user_id, day=day, model=model, user_messages__gt=0).update(
        user_messages=F("user_messages") - 1, updated_at=timezone.now()
    )
