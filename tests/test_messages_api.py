import uuid

import pytest

from interactions.models import Interaction
from messages_app.models import Message

pytestmark = pytest.mark.django_db


def messages_url(interaction) -> str:
    return f"/api/v1/interactions/{interaction.pk}/messages/"


def test_posting_a_user_message_stores_it_and_the_offline_reply(api, interaction):
    response = api.post(messages_url(interaction), {"content": "Hello there"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["message"]["role"] == "user"
    assert body["message"]["content"] == "Hello there"
    reply = body["reply"]
    assert reply["role"] == "assistant"
    assert reply["status"] == "completed"
    assert reply["reply_to"] == body["message"]["id"]
    assert reply["model"] == "offline-provider"
    assert "offline provider" in reply["content"]
    assert "Hello there" in reply["content"]
    assert reply["usage"]["total_tokens"] > 0
    assert reply["latency_ms"] is not None
    assert Message.objects.filter(interaction=interaction).count() == 2


def test_the_offline_provider_answers_the_same_conversation_the_same_way(api, user):
    first = api.post("/api/v1/interactions/", {}, format="json").json()["id"]
    second = api.post("/api/v1/interactions/", {}, format="json").json()["id"]

    replies = [
        api.post(f"/api/v1/interactions/{i}/messages/", {"content": "same"}, format="json").json()["reply"]["content"]
        for i in (first, second)
    ]

    assert replies[0] == replies[1]


def test_counters_and_title_follow_the_messages(api, interaction):
    api.post(messages_url(interaction), {"content": "  Plan   a trip to Lisbon in May  "}, format="json")
    api.post(messages_url(interaction), {"content": "Second question"}, format="json")

    detail = api.get(f"/api/v1/interactions/{interaction.pk}/").json()

    assert detail["message_count"] == 4
    assert detail["title"] == "Plan a trip to Lisbon in May"
    last = Message.objects.filter(interaction=interaction).order_by("-created_at").first()
    assert detail["last_message_at"] == last.created_at.isoformat().replace("+00:00", "Z")


def test_messages_are_listed_in_chronological_order(api, interaction):
    for text in ["one", "two", "three"]:
        api.post(messages_url(interaction), {"content": text}, format="json")

    body = api.get(messages_url(interaction)).json()

    assert [m["role"] for m in body["data"]] == ["user", "assistant"] * 3
    assert [m["content"] for m in body["data"] if m["role"] == "user"] == ["one", "two", "three"]


@pytest.mark.parametrize("role", ["assistant", "system"])
def test_assistant_and_system_messages_are_stored_without_a_reply(api, interaction, role):
    response = api.post(messages_url(interaction), {"role": role, "content": "imported"}, format="json")

    assert response.status_code == 201
    assert response.json()["reply"] is None
    assert Message.objects.filter(interaction=interaction).count() == 1


def test_a_single_message_can_be_fetched(api, interaction):
    created = api.post(messages_url(interaction), {"content": "hi"}, format="json").json()["message"]

    response = api.get(f"{messages_url(interaction)}{created['id']}/")

    assert response.status_code == 200
    assert response.json() == api.get(messages_url(interaction)).json()["data"][0]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   \n"}, "content"),
        ({"content": 12}, "content"),
        ({"content": "hi", "role": "tool"}, "role"),
        ({"content": "hi", "status": "completed"}, "status"),
        ({"content": "hi", "model": "gpt"}, "model"),
        ({"content": "hi", "interaction_id": str(uuid.uuid4())}, "interaction_id"),
        ({"content": "hi", "stream": "maybe"}, "stream"),
    ],
)
def test_invalid_messages_answer_400_and_store_nothing(api, interaction, payload, param):
    response = api.post(messages_url(interaction), payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not Message.objects.exists()
    interaction.refresh_from_db()
    assert interaction.message_count == 0


def test_content_over_the_configured_cap_answers_400(api, interaction, settings):
    cap = settings.MESSAGE_CONTENT_MAX_CHARS

    response = api.post(messages_url(interaction), {"content": "x" * (cap + 1)}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "content"


def test_a_body_that_is_not_json_answers_400(api, interaction):
    response = api.post(messages_url(interaction), data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_a_body_that_is_not_an_object_answers_400(api, interaction):
    response = api.post(messages_url(interaction), data='["content"]', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_form_encoded_body_answers_415(api, interaction):
    response = api.post(messages_url(interaction), data="content=hi", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_body_over_the_size_limit_answers_413_and_stores_nothing(api, interaction, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000

    response = api.post(messages_url(interaction), {"content": "x" * 2000}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not Message.objects.exists()


def test_unknown_message_answers_404_and_malformed_id_400(api, interaction):
    assert api.get(f"{messages_url(interaction)}{uuid.uuid4()}/").status_code == 404
    response = api.get(f"{messages_url(interaction)}12/")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "message_id"


def test_a_deleted_interaction_keeps_no_counters_behind(api, interaction):
    api.post(messages_url(interaction), {"content": "hi"}, format="json")
    api.delete(f"/api/v1/interactions/{interaction.pk}/")

    assert not Interaction.objects.exists()
    assert not Message.objects.exists()
