"""A cancel whose worker is gone: the reply still ends `cancelled`, whoever finalises it, and
the dead attempt's late writes change nothing."""

import pytest
from django.urls import reverse
from django.utils import timezone

from interactions.models import Interaction
from interactions.services import ReplyClaimLost
from messages_app.models import Message, MessageStatus
from messages_app.services import (
    interaction_abandoned_replies_finalise,
    message_reply_cancel_request,
    message_reply_progress_store,
)
from tests.factories import InteractionFactory
from tests.test_reply_claims import lapse_claim, started_reply
from usage.models import UsageBucket

pytestmark = pytest.mark.django_db


def cancel_url(reply: Message) -> str:
    return reverse("message-cancel", kwargs={"interaction_id": str(reply.interaction_id), "pk": str(reply.pk)})


@pytest.mark.parametrize("text", ["Half a", ""])
def test_a_reply_cancelled_before_its_worker_died_is_finalised_as_cancelled_with_its_text(user, settings, text):
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)
    if text:
        message_reply_progress_store(reply=reply, claim=claim, content=text)
    assert message_reply_cancel_request(reply=reply)

    interaction_abandoned_replies_finalise(interaction=lapse_claim(interaction, settings))

    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.error_code, stored.content) == (MessageStatus.INCOMPLETE, "cancelled", text)
    assert Interaction.objects.get(pk=interaction.pk).reply_claimed_at is None


def test_an_abandoned_reply_nobody_cancelled_is_still_abandoned(user, settings):
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)
    message_reply_progress_store(reply=reply, claim=claim, content="Half a")

    interaction_abandoned_replies_finalise(interaction=lapse_claim(interaction, settings))

    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.error_code) == (MessageStatus.INCOMPLETE, "reply_abandoned")


def test_a_cancel_whose_worker_stays_silent_is_finalised_by_the_canceller_once_the_claim_lapses(api, user, settings):
    # The claim must still hold when the cancel arrives (else the request finalises the reply as
    # abandoned before it is cancelled), and lapse while the canceller waits for its worker.
    settings.LLM_REPLY_LEASE_SECONDS = 3
    settings.LLM_REPLY_CANCEL_WAIT_SECONDS = 10
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)  # Its worker never writes again.
    message_reply_progress_store(reply=reply, claim=claim, content="Half a")

    response = api.post(cancel_url(reply))

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["error"]["code"], body["content"]) == ("incomplete", "cancelled", "Half a")
    assert Interaction.objects.get(pk=interaction.pk).reply_claimed_at is None
    # The silent worker wakes up: its writes are fenced off.
    with pytest.raises(ReplyClaimLost):
        message_reply_progress_store(reply=reply, claim=claim, content="Half a sentence")
    assert Message.objects.get(pk=reply.pk).content == "Half a"


def test_a_cancel_left_pending_ends_cancelled_when_a_later_request_finalises_the_reply(api, user, settings):
    settings.LLM_REPLY_CANCEL_WAIT_SECONDS = 0.1
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)
    message_reply_progress_store(reply=reply, claim=claim, content="Half a")
    assert api.post(cancel_url(reply)).status_code == 202

    lapse_claim(interaction, settings)
    detail = api.get(reverse("message-detail", kwargs={"interaction_id": str(interaction.pk), "pk": str(reply.pk)}))
    retried = api.post(reverse("message-retry", kwargs={"interaction_id": str(interaction.pk), "pk": str(reply.pk)}))

    assert (detail.json()["status"], detail.json()["error"]["code"]) == ("incomplete", "cancelled")
    assert retried.status_code == 200
    assert retried.json()["status"] == "completed"


@pytest.mark.parametrize(
    ("cancelled", "text", "counted"),
    [
        (True, "Half a", {"replies_incomplete": 1, "replies_failed": 0, "replies_abandoned": 0}),
        (False, "Half a", {"replies_incomplete": 1, "replies_failed": 0, "replies_abandoned": 1}),
        (False, "", {"replies_incomplete": 0, "replies_failed": 1, "replies_abandoned": 1}),
    ],
    ids=["cancelled", "abandoned-with-text", "abandoned-without-text"],
)
def test_a_reply_finalised_after_its_worker_died_is_counted_in_usage_under_the_status_it_got(
    user, settings, cancelled, text, counted
):
    interaction = InteractionFactory(owner=user)
    reply, claim = started_reply(interaction)
    if text:
        message_reply_progress_store(reply=reply, claim=claim, content=text)
    if cancelled:
        message_reply_cancel_request(reply=reply)

    interaction_abandoned_replies_finalise(interaction=lapse_claim(interaction, settings))
    interaction_abandoned_replies_finalise(interaction=Interaction.objects.get(pk=interaction.pk))

    bucket = UsageBucket.objects.get(user=user, model=interaction.model_name, day=timezone.now().date())
    assert {name: getattr(bucket, name) for name in counted} == counted
