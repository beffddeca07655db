"""Owned claims on the reply slot: every attempt has a token, and a late attempt changes nothing."""

from datetime import timedelta

import pytest

from core.models import now_stored_precision
from interactions.models import Interaction
from interactions.services import (
    ReplyClaimLost,
    interaction_reply_slot_release,
    interaction_reply_slot_renew,
)
from llm.services import reply_retry_start, reply_run, reply_start
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import (
    interaction_abandoned_replies_finalise,
    message_create,
    message_reply_finish,
    message_reply_update,
)
from tests.factories import InteractionFactory

pytestmark = pytest.mark.django_db


def lapse_claim(interaction, settings) -> Interaction:
    """Make the interaction's claim older than the lease, as if its worker went silent."""
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=past)
    return Interaction.objects.get(pk=interaction.pk)


def started_reply(interaction):
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="Hi", reply_deferred=True)
    claim = user_message.reply_claim
    return reply_start(user_message=user_message, claim=claim), claim


def test_each_attempt_takes_a_claim_of_its_own_recorded_on_the_slot_and_the_reply(user):
    interaction = InteractionFactory(owner=user)

    reply, claim = started_reply(interaction)

    slot = Interaction.objects.get(pk=interaction.pk)
    assert slot.reply_claim_token == claim.token == Message.objects.get(pk=reply.pk).claim_token
    assert (slot.reply_claim_host, slot.reply_claim_pid) == (claim.host, claim.pid)
    assert reply.pk == claim.reply_id


def test_after_a_takeover_the_first_attempts_renew_release_and_writes_change_nothing(user, settings):
    interaction = InteractionFactory(owner=user)
    reply, claim_a = started_reply(interaction)
    late_copy = Message.objects.get(pk=reply.pk)

    interaction = interaction_abandoned_replies_finalise(interaction=lapse_claim(interaction, settings))
    abandoned = Message.objects.get(pk=reply.pk)
    assert (abandoned.status, abandoned.error_code) == (MessageStatus.FAILED, "reply_abandoned")
    retried, claim_b = reply_retry_start(message=abandoned)

    assert retried.pk == reply.pk
    assert claim_b.token != claim_a.token
    assert interaction_reply_slot_renew(claim=claim_a) is False
    with pytest.raises(ReplyClaimLost):
        message_reply_update(reply=late_copy, claim=claim_a, content="A's late progress")
    with pytest.raises(ReplyClaimLost):
        message_reply_finish(reply=late_copy, claim=claim_a, content="A's late answer", status=MessageStatus.COMPLETED)
    assert interaction_reply_slot_release(interaction=interaction, claim=claim_a) is False
    slot = Interaction.objects.get(pk=interaction.pk)
    assert slot.reply_claim_token == claim_b.token
    assert slot.reply_claimed_at is not None
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.content, stored.claim_token) == (MessageStatus.IN_PROGRESS, "", claim_b.token)

    list(reply_run(reply=retried, claim=claim_b, stream=False))

    stored.refresh_from_db()
    assert stored.status == MessageStatus.COMPLETED
    assert "offline provider" in stored.content
    assert Interaction.objects.get(pk=interaction.pk).reply_claimed_at is None


def test_a_streaming_attempt_that_lost_its_claim_stops_and_stores_nothing(user, settings):
    settings.LLM_REPLY_LEASE_SECONDS = 0  # Attempts renew their claim at every chunk.
    interaction = InteractionFactory(owner=user)
    reply, claim_a = started_reply(interaction)
    run_a = reply_run(reply=reply, claim=claim_a, stream=True)
    next(run_a)
    next(run_a)

    interaction_abandoned_replies_finalise(interaction=lapse_claim(interaction, settings))
    retried, claim_b = reply_retry_start(message=Message.objects.get(pk=reply.pk))
    list(reply_run(reply=retried, claim=claim_b, stream=False))
    b_stored = Message.objects.get(pk=reply.pk)
    rest = list(run_a)  # A renews at its next chunk, and finds its claim gone.

    assert rest == [], "A went on generating after its claim was lost"
    after = Message.objects.get(pk=reply.pk)
    assert (after.content, after.status, after.updated_at) == (b_stored.content, b_stored.status, b_stored.updated_at)
    assert reply.content == b_stored.content, "A's reply object shows what is stored, not what A had"
    assert Interaction.objects.get(pk=interaction.pk).reply_claimed_at is None


def test_a_retry_of_a_reply_retried_meanwhile_answers_409_and_keeps_the_other_claim(api, user):
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)
    list(reply_run(reply=reply, claim=claim, stream=False))
    Message.objects.filter(pk=reply.pk).update(status=MessageStatus.FAILED)
    reply.refresh_from_db()
    _, claim_b = reply_retry_start(message=reply)

    response = api.post(f"/api/v1/interactions/{interaction.pk}/messages/{reply.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reply_in_progress"
    assert Interaction.objects.get(pk=interaction.pk).reply_claim_token == claim_b.token
