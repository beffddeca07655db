from datetime import date
from typing import Any

from django.db.models import QuerySet, Sum

from usage.models import UsageBucket

TOTAL_FIELDS = (
    "user_messages",
    "replies_completed",
    "replies_incomplete",
    "replies_failed",
    "replies_abandoned",
    "prompt_tokens",
    "completion_tokens",
)


def usage_totals(*, buckets: QuerySet[UsageBucket]) -> dict[str, int]:
    """The sums of `buckets` (one aggregate over the buckets, never over messages)."""
    sums: dict[str, Any] = buckets.aggregate(**{name: Sum(name) for name in TOTAL_FIELDS})
    return {name: sums[name] or 0 for name in TOTAL_FIELDS}


def usage_totals_by_model(*, buckets: QuerySet[UsageBucket]) -> list[dict[str, Any]]:
    rows = buckets.order_by().values("model").annotate(**{name: Sum(name) for name in TOTAL_FIELDS})
    return sorted(rows, key=lambda row: row["model"])


def usage_for_user(*, user_id: Any, since: date) -> dict[str, int]:
    """A user's totals from `since` (inclusive): what a per-user quota would check."""
    return usage_totals(buckets=UsageBucket.objects.filter(user_id=user_id, day__gte=since))
