"""Streaming by content negotiation: `Accept: text/event-stream` alone asks for a stream.

It is what EventSource-style SSE clients send. `stream=true` keeps working; an explicit
`stream=false` (query or body) outranks `Accept` and `?format=`, and the query parameter outranks
the body field: no combination answers an error the schema could not tell. An error found before the first byte
answers JSON with its status; an idempotent replay asked for as an event stream answers as one.
"""

import json

import pytest

from messages_app.models import Message, MessageRole
from tests.factories import MessageFactory
from tests.sse import parse_sse

pytestmark = pytest.mark.django_db

EVENT_STREAM = "text/event-stream"


def messages_url(interaction, suffix=""):  # type: ignore[no-untyped-def]
    return f"/api/v1/interactions/{interaction.pk}/messages/{suffix}"


def post(api, path, body, **headers):  # type: ignore[no-untyped-def]
    return api.generic("POST", path, json.dumps(body), content_type="application/json", **headers)


def test_the_reported_request_accept_event_stream_alone_streams_the_reply(api, interaction, fake_llm):
    fake_llm.default.text = "Hello there"

    response = post(api, messages_url(interaction), {"content": "hi"}, HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 200
    assert response["Content-Type"] == EVENT_STREAM
    events = parse_sse(response.streaming_content)
    assert [name for name, _ in events][:2] == ["message.created", "reply.created"]
    assert events[-1][0] == "reply.completed"
    assert events[-1][1]["content"] == "Hello there"


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/json, text/event-stream", "text/event-stream, application/json"]
)
def test_a_client_that_also_accepts_json_gets_json_unless_it_asks_with_stream_true(api, interaction, fake_llm, accept):
    response = post(api, messages_url(interaction), {"content": "hi"}, HTTP_ACCEPT=accept)

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"


def test_stream_true_keeps_working_with_any_accept_header(api, interaction, fake_llm):
    response = post(api, messages_url(interaction, "?stream=true"), {"content": "hi"}, HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response["Content-Type"] == EVENT_STREAM


@pytest.mark.parametrize(
    ("query", "body", "accept"),
    [
        ("?stream=false", {}, EVENT_STREAM),
        ("", {"stream": False}, EVENT_STREAM),
        ("?stream=false&format=sse", {}, "*/*"),
    ],
)
def test_stream_false_answers_json_even_to_a_client_that_accepts_only_event_streams(
    api, interaction, fake_llm, query, body, accept
):
    response = post(api, messages_url(interaction, query), {"content": "hi", **body}, HTTP_ACCEPT=accept)

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response.json()["reply"]["status"] == "completed"


@pytest.mark.parametrize(("query", "body"), [("?stream=false", {}), ("", {"stream": False})])
def test_stream_false_answers_json_to_a_client_that_prefers_event_streams_but_accepts_json(
    api, interaction, fake_llm, query, body
):
    response = post(
        api,
        messages_url(interaction, query),
        {"content": "hi", **body},
        HTTP_ACCEPT=f"{EVENT_STREAM}, application/json;q=0.1",
    )

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response.json()["reply"]["status"] == "completed"


@pytest.mark.parametrize(
    ("query", "body", "streamed"),
    [("?stream=true", {"stream": False}, True), ("?stream=false", {"stream": True}, False)],
)
def test_the_query_parameter_outranks_the_body_field(api, interaction, fake_llm, query, body, streamed):
    response = post(api, messages_url(interaction, query), {"content": "hi", **body})

    assert response.status_code == (200 if streamed else 201)
    assert response["Content-Type"] == (EVENT_STREAM if streamed else "application/json")


def test_stream_true_in_the_query_and_the_body_streams(api, interaction, fake_llm):
    response = post(api, messages_url(interaction, "?stream=true"), {"content": "hi", "stream": True})

    assert response.status_code == 200
    assert response["Content-Type"] == EVENT_STREAM
    assert parse_sse(response.streaming_content)[-1][0] == "reply.completed"


def test_an_error_before_the_first_byte_answers_json_with_its_status(api, interaction, other_user, fake_llm):
    invalid = post(api, messages_url(interaction), {"content": ""}, HTTP_ACCEPT=EVENT_STREAM)
    missing = post(
        api,
        "/api/v1/interactions/0190f0e0-0000-7000-8000-000000000001/messages/",
        {"content": "hi"},
        HTTP_ACCEPT=EVENT_STREAM,
    )
    unauthenticated = post(type(api)(), messages_url(interaction), {"content": "hi"}, HTTP_ACCEPT=EVENT_STREAM)

    for response, status, code in [(invalid, 400, "blank"), (missing, 404, "not_found")]:
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == code
    assert unauthenticated.status_code == 401
    assert unauthenticated["Content-Type"] == "application/json"
    assert not Message.objects.exists()


def test_a_conflict_asked_for_as_a_stream_answers_json_409(api, interaction, fake_llm):
    fake_llm.default.delay_seconds = 0.5
    first = post(api, messages_url(interaction), {"content": "one"}, HTTP_ACCEPT=EVENT_STREAM)
    events = iter(first.streaming_content)
    next(events)  # The user message is stored and the reply slot is taken.

    second = post(api, messages_url(interaction), {"content": "two"}, HTTP_ACCEPT=EVENT_STREAM)

    assert second.status_code == 409
    assert second["Content-Type"] == "application/json"
    assert second.json()["error"]["code"] == "reply_in_progress"
    list(events)


def test_an_idempotent_replay_asked_for_as_an_event_stream_answers_as_one(api, interaction, fake_llm):
    fake_llm.default.text = "Stored once"
    first = post(api, messages_url(interaction), {"content": "hi"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    calls = len(fake_llm.requests)

    replay = post(
        api, messages_url(interaction), {"content": "hi"}, HTTP_IDEMPOTENCY_KEY="k-1", HTTP_ACCEPT=EVENT_STREAM
    )
    replay_by_query = post(
        api, messages_url(interaction, "?stream=true"), {"content": "hi"}, HTTP_IDEMPOTENCY_KEY="k-1"
    )
    replay_as_json = post(api, messages_url(interaction), {"content": "hi"}, HTTP_IDEMPOTENCY_KEY="k-1")

    for response in (replay, replay_by_query):
        assert response.status_code == 200
        assert response["Content-Type"] == EVENT_STREAM
        assert response["Idempotent-Replayed"] == "true"
        events = parse_sse(response.streaming_content)
        names = [name for name, _ in events]
        assert names[0] == "message.created"
        assert names[-1] == "reply.completed"
        assert events[0][1]["id"] == first.json()["message"]["id"]
        assert events[-1][1] == first.json()["reply"]
        assert "".join(data["delta"] for name, data in events if name == "reply.delta") == "Stored once"
    assert replay_as_json.status_code == 201
    assert replay_as_json.json() == first.json()
    assert len(fake_llm.requests) == calls, "a replay called the model"
    assert Message.objects.count() == 2


def test_retry_asked_for_as_an_event_stream_streams(api, interaction, fake_llm):
    user_message = MessageFactory(interaction=interaction, role=MessageRole.USER, content="hi")
    failed = MessageFactory(
        interaction=interaction, role=MessageRole.ASSISTANT, content="", status="failed", reply_to=user_message
    )
    fake_llm.default.text = "Second try"

    response = post(api, messages_url(interaction, f"{failed.pk}/retry/"), {}, HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 200
    assert response["Content-Type"] == EVENT_STREAM
    events = parse_sse(response.streaming_content)
    assert events[-1][0] == "reply.completed"
    assert events[-1][1]["content"] == "Second try"


def test_listing_messages_with_accept_event_stream_is_not_acceptable(api, interaction):
    response = api.get(messages_url(interaction), HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"


def test_retry_with_stream_false_answers_json_even_to_a_client_that_accepts_only_event_streams(
    api, interaction, fake_llm
):
    user_message = MessageFactory(interaction=interaction, role=MessageRole.USER, content="hi")
    failed = MessageFactory(
        interaction=interaction, role=MessageRole.ASSISTANT, content="", status="failed", reply_to=user_message
    )

    response = post(api, messages_url(interaction, f"{failed.pk}/retry/?stream=false"), {}, HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["status"] == "completed"
