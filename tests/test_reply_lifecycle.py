"""The reply lifecycle through the API: abandoned replies, retries of user messages,
replays, errors that are ours and not the provider's."""

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from core.exceptions import api_exception_handler
from core.models import now_stored_precision
from interactions.models import Interaction
from llm.services import reply_start, request_fingerprint
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import message_create
from tests.factories import InteractionFactory
from tests.test_reply_write_faults import WRITE_NAMES, write_fails

pytestmark = pytest.mark.django_db


def messages_url(interaction) -> str:  # type: ignore[no-untyped-def]
    return f"/api/v1/interactions/{interaction.pk}/messages/"


def abandoned_reply(interaction, settings) -> Message:  # type: ignore[no-untyped-def]
    """A reply whose worker died mid-reply: `in_progress`, its claim older than the lease."""
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="Hi", reply_deferred=True)
    reply = reply_start(user_message=user_message, claim=user_message.reply_claim)
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=past)
    return reply


def test_a_cached_messages_page_never_shows_an_abandoned_reply_as_in_progress(api, interaction, settings):
    reply = abandoned_reply(interaction, settings)
    # Cached while the claim was still live: the same version is in the cache key.
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=now_stored_precision())
    assert api.get(messages_url(interaction)).json()["data"][1]["status"] == "in_progress"
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=past)

    listed = api.get(messages_url(interaction)).json()["data"]

    assert listed[1]["id"] == str(reply.pk)
    assert listed[1]["status"] == "failed"
    assert listed[1]["error"]["code"] == "reply_abandoned"


@pytest.mark.parametrize("path", ["", "messages/", "messages/{reply}/"])
def test_every_request_that_loads_the_interaction_finalises_its_abandoned_reply(api, interaction, settings, path):
    reply = abandoned_reply(interaction, settings)

    response = api.get(f"/api/v1/interactions/{interaction.pk}/" + path.format(reply=reply.pk))

    assert response.status_code == 200
    assert Message.objects.get(pk=reply.pk).error_code == "reply_abandoned"
    assert Interaction.objects.get(pk=interaction.pk).reply_claimed_at is None


def test_listing_interactions_finalises_abandoned_replies_and_shows_the_recounted_messages(api, user, settings):
    interaction = InteractionFactory(owner=user)
    reply = abandoned_reply(interaction, settings)
    Interaction.objects.filter(pk=interaction.pk).update(message_count=7)  # an insert counted, never stored

    listed = api.get("/api/v1/interactions/").json()["data"]

    assert listed[0]["message_count"] == 2
    assert Message.objects.get(pk=reply.pk).status == MessageStatus.FAILED


def test_an_abandoned_reply_is_retried_in_place_and_a_new_message_is_accepted(api, interaction, settings):
    reply = abandoned_reply(interaction, settings)

    retried = api.post(f"{messages_url(interaction)}{reply.pk}/retry/")
    posted = api.post(messages_url(interaction), {"content": "next"}, format="json")

    assert retried.status_code == 200
    assert (retried.json()["id"], retried.json()["status"]) == (str(reply.pk), "completed")
    assert posted.status_code == 201


def test_a_replay_of_an_abandoned_reply_answers_its_error_with_both_ids_not_409(api, interaction, settings):
    user_message = message_create(
        interaction=interaction,
        role=MessageRole.USER,
        content="Hello",
        reply_deferred=True,
        idempotency_key="k",
        request_fingerprint=request_fingerprint(role="user", content="Hello"),
    )
    reply = reply_start(user_message=user_message, claim=user_message.reply_claim)
    assert (
        api.post(messages_url(interaction), {"content": "Hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k").json()[
            "error"
        ]["code"]
        == "reply_in_progress"
    ), "live: the replay waits"
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=past)

    replayed = api.post(messages_url(interaction), {"content": "Hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert replayed.status_code == 503
    assert replayed.json()["error"]["code"] == "reply_abandoned"
    details = replayed.json()["error"]["details"]
    assert (details["message_id"], details["reply_id"]) == (str(user_message.pk), str(reply.pk))


@pytest.mark.django_db(transaction=True)
def test_a_late_reply_to_an_earlier_user_message_is_stored_directly_after_it(api, user):
    interaction = InteractionFactory(owner=user)
    with write_fails(WRITE_NAMES.index("reply_insert") + 1, "before"):
        first = api.post(messages_url(interaction), {"content": "first"}, format="json")
    api.post(messages_url(interaction), {"content": "second"}, format="json")
    message_id = first.json()["error"]["details"]["message_id"]

    retried = api.post(f"{messages_url(interaction)}{message_id}/retry/")

    assert retried.status_code == 200
    listed = api.get(messages_url(interaction)).json()["data"]
    assert [(m["role"], m["reply_to"]) for m in listed] == [
        ("user", None),
        ("assistant", message_id),
        ("user", None),
        ("assistant", listed[2]["id"]),
    ]
    detail = api.get(f"/api/v1/interactions/{interaction.pk}/").json()
    assert detail["message_count"] == 4
    assert detail["last_message_at"] == listed[3]["created_at"]


def test_a_bug_of_ours_reading_the_providers_answer_is_an_internal_error_with_a_log_line(
    api, interaction, fake_llm, caplog, monkeypatch
):
    def buggy_read(answer, requested_model):
        return answer["choices"][0]["message"].text  # a dict has no attribute `text`

    monkeypatch.setattr("llm.providers.completion_read", buggy_read)

    with caplog.at_level(logging.ERROR, logger="llm.services"):
        response = api.post(messages_url(interaction), {"content": "Hi"}, format="json")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.json()["error"]["type"] == "api_error"
    assert any(record.exc_info and record.exc_info[0] is AttributeError for record in caplog.records)


def test_garbage_from_the_provider_is_still_the_providers_bad_response(api, interaction, fake_llm):
    fake_llm.then(garbage=True)

    response = api.post(messages_url(interaction), {"content": "Hi"}, format="json")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"


def test_a_django_validation_error_raised_by_a_service_answers_400_in_the_envelope():
    try:
        raise ValidationError({"title": ["Ensure this value has at most 200 characters."]})
    except ValidationError as exc:
        response = api_exception_handler(exc, {})

    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["param"] == "title"
    assert response.data["error"]["type"] == "invalid_request_error"
