"""The follow, cancel and stream-ticket endpoints through the API: who may use them and what they answer."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from messages_app.models import Message, MessageRole, MessageStatus
from tests.factories import InteractionFactory, MessageFactory, reply_stored
from tests.sse import parse_sse, read_streamed
from tests.test_metrics import scrape, total

pytestmark = pytest.mark.django_db


def url(name: str, reply: Message) -> str:
    return reverse(name, kwargs={"interaction_id": str(reply.interaction_id), "pk": str(reply.pk)})


def stream_url(reply: Message) -> str:
    return url("message-stream", reply)


@pytest.fixture
def finished_reply(interaction) -> Message:  # type: ignore[no-untyped-def]
    return reply_stored(interaction=interaction, content="Hello there, human.", status=MessageStatus.COMPLETED)


@pytest.fixture
def live_reply(interaction) -> Message:  # type: ignore[no-untyped-def]
    return reply_stored(interaction=interaction, content="So far", status=MessageStatus.IN_PROGRESS)


def test_attaching_to_a_finished_reply_sends_it_whole_with_ids_and_a_retry_hint(api, finished_reply):
    response = api.get(stream_url(finished_reply), HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    body = read_streamed(response).decode()
    assert body.startswith("retry: ")
    events = parse_sse([body.encode()])
    assert [name for name, _ in events] == ["reply.created", "reply.delta", "reply.completed"]
    assert events[1][1] == {"id": str(finished_reply.pk), "delta": "Hello there, human."}
    assert all(block.startswith("id: ") for block in body.split("\n\n")[1:] if block)


def test_resuming_from_the_last_event_sends_nothing_but_the_end(api, finished_reply):
    first = read_streamed(api.get(stream_url(finished_reply))).decode()
    last_id = [line for line in first.splitlines() if line.startswith("id: ")][-1].removeprefix("id: ")

    again = parse_sse([read_streamed(api.get(stream_url(finished_reply), HTTP_LAST_EVENT_ID=last_id))])
    by_query = parse_sse([read_streamed(api.get(stream_url(finished_reply), {"last_event_id": last_id}))])

    assert [name for name, _ in again] == ["reply.completed"]
    assert by_query == again


def test_resuming_mid_text_sends_exactly_the_rest(api, finished_reply):
    first = read_streamed(api.get(stream_url(finished_reply))).decode()
    created_id = next(line for line in first.splitlines() if line.startswith("id: ")).removeprefix("id: ")
    attempt = created_id.split(".")[0]

    events = parse_sse([read_streamed(api.get(stream_url(finished_reply), HTTP_LAST_EVENT_ID=f"{attempt}.6.0"))])

    assert events[0] == ("reply.delta", {"id": str(finished_reply.pk), "delta": "there, human."})


def test_an_event_id_that_is_not_ours_is_a_400(api, finished_reply):
    response = api.get(stream_url(finished_reply), HTTP_LAST_EVENT_ID="garbage")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_last_event_id"


@pytest.mark.parametrize(("header", "query"), [("", None), (None, "")])
def test_an_empty_event_id_is_a_400_not_a_stream_from_the_start(api, finished_reply, header, query):
    response = api.get(
        stream_url(finished_reply),
        {} if query is None else {"last_event_id": query},
        **({} if header is None else {"HTTP_LAST_EVENT_ID": header}),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_last_event_id"


def test_someone_elses_reply_is_a_404_for_every_control_endpoint(other_api, finished_reply, live_reply):
    assert other_api.get(stream_url(finished_reply)).status_code == 404
    assert other_api.post(url("message-cancel", live_reply)).status_code == 404
    assert other_api.post(url("message-stream-ticket", finished_reply)).status_code == 404
    assert Message.objects.get(pk=live_reply.pk).cancel_requested_at is None


def test_anonymous_clients_are_refused(finished_reply):
    assert APIClient().get(stream_url(finished_reply)).status_code == 401


def test_a_browser_session_can_follow_with_event_source_headers(user, finished_reply):
    browser = APIClient()
    browser.force_login(user)

    response = browser.get(stream_url(finished_reply), HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 200
    assert parse_sse([read_streamed(response)])[-1][0] == "reply.completed"


def test_a_stream_ticket_lets_a_client_without_headers_follow_that_reply_only(api, finished_reply, interaction):
    answer = api.post(url("message-stream-ticket", finished_reply))
    assert answer.status_code == 200
    ticket = answer.json()["ticket"]
    assert answer.json()["stream_url"].endswith(f"{stream_url(finished_reply)}?ticket={ticket}")
    other_reply = MessageFactory(interaction=interaction, role=MessageRole.ASSISTANT, content="x")
    anonymous = APIClient()

    followed = anonymous.get(stream_url(finished_reply), {"ticket": ticket}, HTTP_ACCEPT="text/event-stream")
    elsewhere = anonymous.get(stream_url(other_reply), {"ticket": ticket})
    tampered = anonymous.get(stream_url(finished_reply), {"ticket": ticket[:-2] + "xx"})
    on_another_endpoint = anonymous.get(
        reverse("message-detail", kwargs={"interaction_id": str(interaction.pk), "pk": str(finished_reply.pk)}),
        {"ticket": ticket},
    )

    assert followed.status_code == 200
    assert parse_sse([read_streamed(followed)])[-1][0] == "reply.completed"
    assert elsewhere.status_code == 401
    assert tampered.status_code == 401
    assert on_another_endpoint.status_code == 401


def test_an_expired_stream_ticket_is_refused(api, finished_reply, settings):
    ticket = api.post(url("message-stream-ticket", finished_reply)).json()["ticket"]
    settings.REPLY_STREAM_TICKET_SECONDS = -1

    response = APIClient().get(stream_url(finished_reply), {"ticket": ticket})

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_a_user_following_too_many_streams_gets_429_until_one_closes(api, live_reply, settings):
    settings.REPLY_FOLLOWERS_PER_USER = 1
    settings.REPLY_STREAM_POLL_SECONDS = 0.01
    first = api.get(stream_url(live_reply))
    next(iter(first.streaming_content))  # Attached and waiting for more text.

    refused = api.get(stream_url(live_reply))
    first.close()
    later = api.get(stream_url(live_reply))
    next(iter(later.streaming_content))
    later.close()

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert later.status_code == 200


def test_a_follower_gets_the_stored_progress_then_the_rest_and_the_end(api, live_reply, settings):
    settings.REPLY_STREAM_POLL_SECONDS = 0.01
    response = api.get(stream_url(live_reply))
    chunks = iter(response.streaming_content)
    head = parse_sse([next(chunks)])
    Message.objects.filter(pk=live_reply.pk).update(content="So far, so good")
    growth = parse_sse([next(chunks)])
    Message.objects.filter(pk=live_reply.pk).update(content="So far, so good.", status=MessageStatus.COMPLETED)
    rest = parse_sse([b"".join(chunks)])
    response.close()

    assert head == [
        ("reply.created", head[0][1]),
        ("reply.delta", {"id": str(live_reply.pk), "delta": "So far"}),
    ]
    assert growth == [("reply.delta", {"id": str(live_reply.pk), "delta": ", so good"})]
    assert rest == [("reply.delta", {"id": str(live_reply.pk), "delta": "."}), ("reply.completed", rest[1][1])]


def test_a_follower_is_sent_heartbeats_while_nothing_happens(api, live_reply, settings):
    settings.REPLY_STREAM_POLL_SECONDS = 0.01
    settings.REPLY_STREAM_HEARTBEAT_SECONDS = 0.05
    response = api.get(stream_url(live_reply))
    chunks = iter(response.streaming_content)
    next(chunks)

    heartbeat = next(chunks)
    response.close()

    assert heartbeat == b": keep-alive\n\n"


def test_the_stream_of_a_user_message_is_a_conflict(api, finished_reply):
    question = finished_reply.reply_to

    response = api.get(stream_url(question))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_a_reply"


def test_a_stream_ticket_for_a_user_message_is_a_conflict_and_issues_no_ticket(api, finished_reply):
    response = api.post(url("message-stream-ticket", finished_reply.reply_to))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_a_reply"
    assert response.json()["error"]["param"] == "message_id"
    assert "ticket" not in response.json()


def test_cancelling_a_finished_reply_is_a_409_naming_its_status(api, finished_reply):
    response = api.post(url("message-cancel", finished_reply))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reply_not_in_progress"
    assert response.json()["error"]["details"]["status"] == "completed"
    assert Message.objects.get(pk=finished_reply.pk).cancel_requested_at is None


def test_cancelling_a_user_message_is_a_409(api, finished_reply):
    response = api.post(url("message-cancel", finished_reply.reply_to))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_a_reply"


def test_a_cancel_that_no_worker_answers_in_time_is_accepted_and_stored(api, live_reply, settings):
    settings.LLM_REPLY_CANCEL_WAIT_SECONDS = 0.1

    response = api.post(url("message-cancel", live_reply))

    assert response.status_code == 202
    assert response.json()["status"] == "in_progress"
    assert Message.objects.get(pk=live_reply.pk).cancel_requested_at is not None


def test_streams_cancels_and_progress_writes_are_counted_in_metrics(client, api, finished_reply, live_reply, settings):
    settings.LLM_REPLY_CANCEL_WAIT_SECONDS = 0
    before = scrape(client)

    read_streamed(api.get(stream_url(finished_reply)))
    api.post(url("message-cancel", finished_reply))
    api.post(url("message-cancel", live_reply))
    after = scrape(client)

    def grew(name, **labels) -> float:  # type: ignore[no-untyped-def]
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("chat_reply_follows_total", outcome="finished") == 1
    assert grew("chat_reply_cancels_total", outcome="not_in_progress") == 1
    assert grew("chat_reply_cancels_total", outcome="pending") == 1
    assert any(name == "chat_reply_followers" for name, _, _ in after)
    assert any(name == "chat_reply_progress_writes_total" for name, _, _ in after)


def test_reads_during_generation_show_the_stored_progress_not_a_cached_page(api, interaction, fake_llm, settings):
    settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS = 0
    settings.LLM_REPLY_PROGRESS_GROWTH = 0
    fake_llm.default.text = "one two three four five six"
    messages = reverse("message-list", kwargs={"interaction_id": str(interaction.pk)})
    response = api.post(f"{messages}?stream=true", {"content": "count"}, format="json")
    chunks = iter(response.streaming_content)
    next(chunks)  # message.created, reply.created
    cached = api.get(messages).json()["data"][1]

    for _ in range(3):
        next(chunks)
    during = api.get(messages).json()["data"][1]
    detail = api.get(
        reverse("message-detail", kwargs={"interaction_id": str(interaction.pk), "pk": during["id"]})
    ).json()
    read_streamed(response)

    assert cached["status"] == "in_progress"
    assert during["status"] == "in_progress"
    assert during["content"] == "one two three "
    assert detail["content"] == "one two three "


def test_other_interactions_do_not_leak_through_the_cancel_endpoint(api, user):
    mine = InteractionFactory(owner=user)
    question = MessageFactory(interaction=mine, role=MessageRole.USER)
    reply = MessageFactory(interaction=mine, role=MessageRole.ASSISTANT, reply_to=question)
    theirs = InteractionFactory()

    response = api.post(reverse("message-cancel", kwargs={"interaction_id": str(theirs.pk), "pk": str(reply.pk)}))

    assert response.status_code == 404
