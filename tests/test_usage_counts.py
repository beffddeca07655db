"""What usage counts besides finished replies: the user messages, and the replies finalised as
abandoned after their worker died, each exactly once, as staff see them on the usage page."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone

from core.models import now_stored_precision
from interactions.models import Interaction
from llm.services import reply_start
from messages_app.models import Message, MessageRole, MessageStatus
from messages_app.services import _abandoned_reply_finalise, message_create
from tests.factories import InteractionFactory
from tests.test_reply_write_faults import CASE_IDS, CASES, WRITE_NAMES, finalise_abandoned, post, write_fails
from usage.models import UsageBucket


def todays_bucket(interaction: Interaction) -> UsageBucket:
    return UsageBucket.objects.get(user=interaction.owner, model=interaction.model_name, day=timezone.now().date())


def messages_url(interaction: Interaction) -> str:
    return f"/api/v1/interactions/{interaction.pk}/messages/"


@pytest.fixture
def staff_client(client, db):  # type: ignore[no-untyped-def]
    client.force_login(User.objects.create_superuser(username="root", email="root@example.com", password="x" * 12))
    return client


def usage_page(staff_client, username: str):  # type: ignore[no-untyped-def]
    response = staff_client.get(f"/admin/usage/usagebucket/?username={username}")
    assert response.status_code == 200
    return response


# --- User messages -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_see_the_user_messages_of_each_bucket_and_in_the_totals(api, user, interaction, fake_llm, staff_client):
    api.post(messages_url(interaction), {"content": "hello"}, format="json")
    streamed = api.post(f"{messages_url(interaction)}?stream=true", {"content": "again"}, format="json")
    b"".join(streamed.streaming_content)

    page = usage_page(staff_client, user.username)

    assert page.context["usage_totals"]["user_messages"] == 2
    assert page.context["usage_totals"]["replies_completed"] == 2
    (row,) = page.context["usage_totals_by_model"]
    assert (row["model"], row["user_messages"]) == ("test-model", 2)
    html = page.content.decode()
    assert "User messages" in html
    assert '<td class="field-user_messages">2</td>' in html


@pytest.mark.django_db
def test_a_replayed_or_refused_message_is_not_counted_again(api, interaction, fake_llm):
    first = api.post(messages_url(interaction), {"content": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    replay = api.post(messages_url(interaction), {"content": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="a", reply_deferred=True)
    refused = api.post(messages_url(interaction), {"content": "while a reply is made"}, format="json")

    assert (first.status_code, replay.status_code, refused.status_code) == (201, 201, 409)
    assert replay.json()["message"]["id"] == first.json()["message"]["id"]
    assert user_message.pk
    assert todays_bucket(interaction).user_messages == 2


@pytest.mark.django_db
def test_an_assistant_message_is_not_a_user_message(interaction, fake_llm, api):
    api.post(messages_url(interaction), {"content": "hi"}, format="json")

    stored = todays_bucket(interaction)
    assert (stored.user_messages, stored.replies_completed) == (1, 1)
    assert Message.objects.filter(interaction=interaction).count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("number", "when"), CASES, ids=CASE_IDS)
def test_after_any_failed_write_of_a_post_the_user_messages_counted_are_the_ones_stored(
    api, user, settings, number, when
):
    """Caused for real at each write of the POST (tests/test_reply_write_faults.py): a message
    whose insert failed is taken back, one stored although its insert reported failure stays
    counted. Only a failed write of the count itself may miss it (logged, never over-counted)."""
    interaction = InteractionFactory(owner=user)

    with write_fails(number, when):
        post(api, interaction)
    finalise_abandoned(settings)

    stored_user_messages = Message.objects.filter(interaction=interaction, role=MessageRole.USER).count()
    bucket = UsageBucket.objects.filter(user=user).first()
    counted = bucket.user_messages if bucket else 0
    if WRITE_NAMES[number - 1].startswith("usage_message"):
        assert counted <= stored_user_messages
    else:
        assert counted == stored_user_messages


# --- Abandoned replies -------------------------------------------------------------------------


def abandoned_reply(user, settings):  # type: ignore[no-untyped-def]
    """A reply left in_progress by a worker that died: its claim has lapsed."""
    interaction = InteractionFactory(owner=user, model_name="test-model")
    user_message = message_create(interaction=interaction, role=MessageRole.USER, content="Hi", reply_deferred=True)
    reply = reply_start(user_message=user_message, claim=user_message.reply_claim)
    past = now_stored_precision() - timedelta(seconds=settings.LLM_REPLY_LEASE_SECONDS + 1)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=past)
    return interaction, reply


@pytest.mark.django_db
def test_a_reply_finalised_by_the_command_is_counted_once_as_failed_and_abandoned(user, settings, staff_client):
    _, reply = abandoned_reply(user, settings)

    call_command("finalise_abandoned_replies")
    call_command("finalise_abandoned_replies")

    assert Message.objects.get(pk=reply.pk).error_code == "reply_abandoned"
    totals = usage_page(staff_client, user.username).context["usage_totals"]
    assert (totals["user_messages"], totals["replies_failed"], totals["replies_abandoned"]) == (1, 1, 1)
    assert totals["replies_completed"] == 0
    assert "Of which abandoned" in usage_page(staff_client, user.username).content.decode()


@pytest.mark.django_db
def test_a_reply_finalised_by_the_owners_next_request_is_counted_once(api, user, settings):
    interaction, reply = abandoned_reply(user, settings)

    assert api.get(messages_url(interaction)).status_code == 200
    call_command("finalise_abandoned_replies")
    api.get(messages_url(interaction))

    assert Message.objects.get(pk=reply.pk).status == MessageStatus.FAILED
    stored = todays_bucket(interaction)
    assert (stored.replies_failed, stored.replies_abandoned) == (1, 1)


@pytest.mark.django_db
def test_an_orphan_reply_that_no_slot_holds_is_counted_once_by_the_sweep(user, settings):
    interaction, reply = abandoned_reply(user, settings)
    Interaction.objects.filter(pk=interaction.pk).update(reply_claimed_at=None, reply_claim_token="")

    call_command("finalise_abandoned_replies")
    call_command("finalise_abandoned_replies")

    assert Message.objects.get(pk=reply.pk).error_code == "reply_abandoned"
    assert todays_bucket(interaction).replies_abandoned == 1


@pytest.mark.django_db(transaction=True)
def test_finalisers_racing_over_the_same_abandoned_replies_count_each_exactly_once(user, settings):
    """The command, a second copy of it and gunicorn's child_exit may run at once: each
    reply is failed by one conditional update, and only the finaliser whose update changed it
    counts it."""
    abandoned = [abandoned_reply(user, settings) for _ in range(4)]
    racers = 4
    start = threading.Barrier(racers)
    errors: list[BaseException] = []

    def finalise() -> None:
        try:
            start.wait(timeout=10)
            call_command("finalise_abandoned_replies")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=finalise) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert all(Message.objects.get(pk=reply.pk).status == MessageStatus.FAILED for _, reply in abandoned)
    stored = todays_bucket(abandoned[0][0])
    assert (stored.replies_failed, stored.replies_abandoned, stored.user_messages) == (4, 4, 4)


@pytest.mark.django_db
def test_of_two_finalisers_that_read_the_same_in_progress_reply_only_the_one_that_fails_it_counts_it(user, settings):
    """The interleaving a race produces: both read the reply as in_progress (by its claim's
    token) and both try the conditional update; the second changes nothing, counts nothing."""
    interaction, reply = abandoned_reply(user, settings)
    token = Interaction.objects.get(pk=interaction.pk).reply_claim_token

    outcomes = [
        _abandoned_reply_finalise(
            interaction=interaction, reply_id=reply.pk, claim_token=token, prompt_tokens=None, completion_tokens=None
        )
        for _ in range(2)
    ]

    assert outcomes == [True, False]
    assert Message.objects.get(pk=reply.pk).error_code == "reply_abandoned"
    assert todays_bucket(interaction).replies_abandoned == 1
