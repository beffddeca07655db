"""A failed write whose clean-up fails too (the database is away for a moment) does not block
the conversation until the claim's lease lapses: the worker retries the clean-up by itself
(messages_app.claim_finaliser) and the slot is free once the database answers again.

Found from outside: a write lock held for 6 s under load left 9 of 50 conversations answering
409 `reply_in_progress` for the 5 minutes of the lease.
"""

import time

import pytest

from interactions.models import Interaction
from messages_app import services
from messages_app.claim_finaliser import ClaimFinaliser
from messages_app.models import MessageStatus
from tests.factories import InteractionFactory
from tests.test_reply_write_faults import (
    WRITE_NAMES,
    assert_counters_equal_rows,
    database_gone,
    post,
    stored,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The writes after the slot was claimed: a failure there leaves the claim's clean-up to do.
CASES = [
    (WRITE_NAMES.index(name) + 1, when)
    for name in ("user_insert", "reply_insert", "reply_final")
    for when in ("before", "after")
]


@pytest.fixture
def finaliser(monkeypatch, settings) -> ClaimFinaliser:  # type: ignore[no-untyped-def]
    settings.LLM_REPLY_FINALISE_RETRY_SECONDS = 0.2
    fresh = ClaimFinaliser()  # its own thread, which reads the setting above
    monkeypatch.setattr(services, "claim_finaliser", fresh)
    return fresh


def slot_held(interaction) -> bool:  # type: ignore[no-untyped-def]
    return Interaction.objects.get(pk=interaction.pk).reply_claimed_at is not None


@pytest.mark.parametrize(("number", "when"), CASES, ids=[f"{WRITE_NAMES[n - 1]}-{w}" for n, w in CASES])
def test_the_slot_is_freed_by_the_worker_once_the_database_is_back_not_after_the_lease(
    api, user, finaliser, number, when
):
    interaction = InteractionFactory(owner=user)
    with database_gone(number, when):
        failed = post(api, interaction)
    assert failed.status_code == 503
    assert finaliser.pending() == 1, "the clean-up failed too, and was queued"

    deadline = time.monotonic() + 10
    while (finaliser.pending() or slot_held(interaction)) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert not slot_held(interaction)
    assert not [m for m in stored(interaction) if m.status == MessageStatus.IN_PROGRESS]
    assert_counters_equal_rows(interaction)
    assert post(api, interaction).status_code == 201, "the conversation takes messages again at once"


def test_a_claim_is_given_up_once_its_lease_has_lapsed(api, user, finaliser, settings):
    # From then on it is an abandoned claim like any other: the next request finalises it.
    settings.LLM_REPLY_LEASE_SECONDS = 0
    interaction = InteractionFactory(owner=user)
    with database_gone(WRITE_NAMES.index("reply_insert") + 1, "before"):
        post(api, interaction)

    deadline = time.monotonic() + 10
    while finaliser.pending() and time.monotonic() < deadline:
        time.sleep(0.1)

    assert finaliser.pending() == 0
    assert slot_held(interaction), "given up, not finalised"
    assert post(api, interaction).status_code == 201
