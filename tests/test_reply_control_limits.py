"""The follow, cancel and stream-ticket endpoints: their rate limits, their schema, the ids of
replayed streams and the progress-write metrics."""

import re

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.throttling import SimpleRateThrottle

from messages_app.models import Message, MessageStatus
from tests.factories import reply_stored
from tests.sse import parse_sse, read_streamed
from tests.test_metrics import scrape, total

pytestmark = pytest.mark.django_db

EVENT_ID = re.compile(r"^[A-Za-z0-9_-]+\.\d+\.\d+(-\d+)?$")


def throttle_rates(monkeypatch, **rates: str) -> None:  # type: ignore[no-untyped-def]
    # DRF's throttles read their rates once, at import: patch where they read them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **rates})


def url(name: str, reply: Message) -> str:
    return reverse(name, kwargs={"interaction_id": str(reply.interaction_id), "pk": str(reply.pk)})


@pytest.fixture
def finished_reply(interaction) -> Message:  # type: ignore[no-untyped-def]
    return reply_stored(interaction=interaction, content="Hello there.", status=MessageStatus.COMPLETED)


def test_following_a_reply_is_under_the_general_rate_limit(monkeypatch, api, finished_reply):
    throttle_rates(monkeypatch, user="2/minute")

    statuses = [api.get(url("message-stream", finished_reply)) for _ in range(3)]
    for response in statuses[:2]:
        read_streamed(response)

    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "throttled"


def test_cancelling_is_under_the_general_rate_limit(monkeypatch, api, finished_reply):
    throttle_rates(monkeypatch, user="2/minute")

    statuses = [api.post(url("message-cancel", finished_reply)).status_code for _ in range(3)]

    assert statuses == [409, 409, 429]


def test_a_user_at_the_message_posting_limit_can_still_stop_and_follow_a_reply(monkeypatch, api, finished_reply):
    throttle_rates(monkeypatch, message_post="1/minute")
    messages = reverse("message-list", kwargs={"interaction_id": str(finished_reply.interaction_id)})
    posted = [api.post(messages, {"content": f"m{n}", "role": "system"}, format="json").status_code for n in range(2)]

    cancelled = api.post(url("message-cancel", finished_reply))
    ticket = api.post(url("message-stream-ticket", finished_reply))

    assert posted == [201, 429]
    assert cancelled.status_code == 409
    assert cancelled.json()["error"]["code"] == "reply_not_in_progress"
    assert ticket.status_code == 200


@pytest.fixture(scope="module")
def schema() -> dict:  # type: ignore[type-arg]
    return SchemaGenerator().get_schema(request=None, public=True)  # type: ignore[no-any-return]


def test_the_schema_documents_following_a_reply_with_its_events_and_resume_parameters(schema):
    operation = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/{id}/stream/"]["get"]

    assert "text/event-stream" in operation["responses"]["200"]["content"]
    for event in ("reply.created", "reply.delta", "reply.completed", "reply.cancelled", "reply_abandoned"):
        assert event in operation["description"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {"Last-Event-ID", "last_event_id", "ticket"} <= set(parameters)
    # The documented shape of an event id is what the server parses: no schema-valid id is refused.
    for name in ("Last-Event-ID", "last_event_id"):
        pattern = re.compile(parameters[name]["schema"]["pattern"])
        assert pattern.match("01a215a6-c4a3.12.0")
        assert pattern.match("01a215a6-c4a3.12.1764120000000-3")
        assert not pattern.match("R[%-p5V#Y23g")
    assert {"400", "401", "404", "409", "429"} <= set(operation["responses"])
    assert {"streamTicket"} <= {name for entry in operation["security"] for name in entry}


def test_the_schema_documents_cancelling_a_reply_and_its_answers(schema):
    operation = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/{id}/cancel/"]["post"]

    assert {"200", "202", "404", "409"} <= set(operation["responses"])
    assert "cancelled" in operation["description"]
    ticket = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/{id}/stream-ticket/"]["post"]
    assert "200" in ticket["responses"]


def test_the_post_streams_description_names_the_cancelled_event_and_event_ids(schema):
    create = schema["paths"]["/api/v1/interactions/{interaction_id}/messages/"]["post"]

    assert "reply.cancelled" in create["description"]
    assert "opaque `id`" in create["description"]


def test_an_idempotent_replay_asked_for_as_a_stream_carries_event_ids_a_follower_resumes_from(
    api, interaction, fake_llm
):
    fake_llm.default.text = "Stored once."
    messages = reverse("message-list", kwargs={"interaction_id": str(interaction.pk)})
    first = read_streamed(
        api.post(messages, {"content": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k1", HTTP_ACCEPT="text/event-stream")
    )

    replayed = api.post(
        messages, {"content": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k1", HTTP_ACCEPT="text/event-stream"
    )
    body = read_streamed(replayed).decode()

    assert replayed["Idempotent-Replayed"] == "true"
    assert body.startswith("retry: ")
    ids = re.findall(r"^id: (.+)$", body, flags=re.M)
    events = parse_sse([body.encode()])
    assert len(ids) == len(events) == 4
    assert all(EVENT_ID.match(i) for i in ids)
    assert [name for name, _ in events] == ["message.created", "reply.created", "reply.delta", "reply.completed"]
    original = parse_sse([first])
    assert events[2][1]["delta"] == "".join(data["delta"] for name, data in original if name == "reply.delta")
    reply = events[1][1]
    # The last id resumes after the whole text: a follower gets only the terminal event.
    resumed = parse_sse(
        [read_streamed(api.get(url("message-stream", Message.objects.get(pk=reply["id"])), HTTP_LAST_EVENT_ID=ids[-1]))]
    )
    assert [name for name, _ in resumed] == ["reply.completed"]


def test_progress_writes_and_their_characters_are_counted_in_metrics(client, api, interaction, fake_llm, settings):
    settings.LLM_REPLY_PROGRESS_INTERVAL_SECONDS = 0
    settings.LLM_REPLY_PROGRESS_GROWTH = 0
    fake_llm.default.text = "one two three four five six"
    before = scrape(client)

    messages = reverse("message-list", kwargs={"interaction_id": str(interaction.pk)})
    read_streamed(api.post(f"{messages}?stream=true", {"content": "count"}, format="json"))
    after = scrape(client)

    writes = total(after, "chat_reply_progress_writes_total") - total(before, "chat_reply_progress_writes_total")
    chars = total(after, "chat_reply_progress_bytes_total") - total(before, "chat_reply_progress_bytes_total")
    assert writes >= 3
    assert chars >= len("one two three")
